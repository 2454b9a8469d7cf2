// Qcow2Image::make_empty (what `skiff-img commit` does to the overlay, like
// `qemu-img commit` without -d): every cluster of the active image becomes
// unallocated, so the overlay reads through to its backing file; qemu-img
// sees a clean image with nothing allocated in the overlay; snapshots keep
// their data.
#include <random>

#include "block/qcow2/create.h"
#include "block/qcow2/qcow2_image.h"
#include "block_test_util.h"

namespace skiff {
namespace {

using testing::ScratchDir;

constexpr uint64_t kSize = 6ull << 20;

std::vector<uint8_t> read_all(DiskImage& img) {
  std::vector<uint8_t> v(img.size());
  EXPECT_TRUE(img.read(0, v));
  return v;
}

// A base image with data written by qemu-io and an overlay on it.
void make_chain(const ScratchDir& dir) {
  auto r = testing::run("qemu-img create -q -f qcow2 " + dir.file("base.qcow2") + " 6M && " +
                        "qemu-io -f qcow2 -c 'write -P 0x11 0 6M' " + dir.file("base.qcow2") +
                        " >/dev/null && qemu-img create -q -f qcow2 -o cluster_size=4096 -b " +
                        "base.qcow2 -F qcow2 " + dir.file("top.qcow2"));
  ASSERT_EQ(r.status, 0) << r.output;
}

// Writes, zeroes, discards and a compressed cluster in the overlay.
void dirty_overlay(Qcow2Image& top, std::mt19937_64& rng) {
  for (int i = 0; i < 40; ++i) {
    const uint64_t len = 1 + rng() % 30000;
    const uint64_t off = rng() % (kSize - len);
    ASSERT_TRUE(top.write(off, testing::random_bytes(rng, len)));
  }
  ASSERT_TRUE(top.write_zeroes(1 << 20, 64 << 10, false));
  ASSERT_TRUE(top.write_zeroes(2 << 20, 64 << 10, true));
  ASSERT_TRUE(top.discard(3 << 20, 64 << 10));
  std::vector<uint8_t> compressible(4096, 0x42);
  ASSERT_TRUE(top.write_compressed(1200, compressible));
  ASSERT_TRUE(top.flush());
}

void expect_nothing_allocated(Qcow2Image& top) {
  for (uint64_t off = 0; off < kSize;) {
    auto st = top.block_status(off, kSize - off);
    ASSERT_TRUE(st) << st.error().what();
    EXPECT_FALSE(st->allocated) << "offset " << off << " still allocated in the overlay";
    EXPECT_GE(st->depth, 1) << "offset " << off;
    ASSERT_GT(st->length, 0u);
    off += st->length;
  }
}

TEST(Qcow2MakeEmpty, OverlayReadsThroughToBackingAndChecksClean) {
  SKIP_WITHOUT_QEMU_IMG();
  ScratchDir dir;
  make_chain(dir);
  const std::string top_path = dir.file("top.qcow2");
  std::mt19937_64 rng(5);
  {
    auto top = Qcow2Image::open(top_path, {});
    ASSERT_TRUE(top) << top.error().what();
    dirty_overlay(**top, rng);
    ASSERT_NE(read_all(**top), read_all(*(*top)->backing()));
    auto r = (*top)->make_empty();
    ASSERT_TRUE(r) << r.error().what();
    EXPECT_EQ(read_all(**top), read_all(*(*top)->backing()));
    expect_nothing_allocated(**top);
  }
  auto top = Qcow2Image::open(top_path, {.read_only = true});
  ASSERT_TRUE(top);
  EXPECT_EQ(read_all(**top), read_all(*(*top)->backing())) << "after reopen";
  expect_nothing_allocated(**top);
  // No leaks either: the L2 tables and data clusters were all released.
  auto chk = testing::run("qemu-img check " + top_path);
  EXPECT_EQ(chk.status, 0) << chk.output;
  auto map = testing::run("qemu-img map --output=json " + top_path);
  ASSERT_EQ(map.status, 0) << map.output;
  EXPECT_EQ(map.output.find("\"depth\": 0"), std::string::npos) << map.output;
  auto cmp = testing::run("qemu-img compare " + top_path + " " + dir.file("base.qcow2"));
  EXPECT_EQ(cmp.status, 0) << cmp.output;
}

TEST(Qcow2MakeEmpty, SnapshotOfTheOverlayKeepsItsData) {
  SKIP_WITHOUT_QEMU_IMG();
  ScratchDir dir;
  make_chain(dir);
  const std::string top_path = dir.file("top.qcow2");
  std::mt19937_64 rng(6);
  std::vector<uint8_t> before;
  {
    auto top = Qcow2Image::open(top_path, {});
    ASSERT_TRUE(top);
    dirty_overlay(**top, rng);
    before = read_all(**top);
  }
  auto snap = testing::run("qemu-img snapshot -c keep " + top_path);
  ASSERT_EQ(snap.status, 0) << snap.output;
  {
    auto top = Qcow2Image::open(top_path, {});
    ASSERT_TRUE(top);
    ASSERT_TRUE((*top)->write(100, testing::random_bytes(rng, 70000)));  // some unshared clusters
    auto r = (*top)->make_empty();
    ASSERT_TRUE(r) << r.error().what();
    expect_nothing_allocated(**top);
  }
  auto chk = testing::run("qemu-img check " + top_path);
  EXPECT_EQ(chk.status, 0) << chk.output;
  const std::string raw = dir.file("keep.raw");
  auto conv = testing::run("qemu-img convert -l snapshot.name=keep -O raw " + top_path + " " + raw);
  ASSERT_EQ(conv.status, 0) << conv.output;
  FILE* f = std::fopen(raw.c_str(), "rb");
  ASSERT_TRUE(f);
  std::vector<uint8_t> got(before.size());
  EXPECT_EQ(std::fread(got.data(), 1, got.size(), f), got.size());
  std::fclose(f);
  EXPECT_TRUE(got == before) << "snapshot 'keep' lost data when the overlay was emptied";
}

}  // namespace
}  // namespace skiff

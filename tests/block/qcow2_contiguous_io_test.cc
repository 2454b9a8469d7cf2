// Requests over several clusters: data clusters that follow each other in the
// file are read/written with one syscall (Qcow2Image::contiguous_bytes); a run
// must stop at a cluster that is elsewhere in the file, unallocated, zero, or
// shared with a snapshot (which must be copied, never overwritten in place).
#include <random>

#include "block/qcow2/create.h"
#include "block/qcow2/qcow2_image.h"
#include "block_test_util.h"

namespace skiff {
namespace {

using testing::ScratchDir;

constexpr uint64_t kCluster = 4096;
constexpr uint64_t kSize = 4ull << 20;

std::unique_ptr<Qcow2Image> open_rw(const std::string& path) {
  auto img = Qcow2Image::open(path, {});
  EXPECT_TRUE(img) << img.error().what();
  return img ? std::move(*img) : nullptr;
}

void create(const std::string& path) {
  qcow2::CreateOptions co;
  co.size = kSize;
  co.cluster_size = kCluster;
  ASSERT_TRUE(qcow2::create(path, co));
}

void expect_content(Qcow2Image& img, const std::vector<uint8_t>& model, const char* when) {
  std::vector<uint8_t> got(model.size());
  ASSERT_TRUE(img.read(0, got));
  const auto bad = std::mismatch(got.begin(), got.end(), model.begin());
  EXPECT_TRUE(bad.first == got.end())
      << when << ": first difference at byte " << (bad.first - got.begin());
}

TEST(Qcow2ContiguousIo, MultiClusterRequestsOverScatteredClustersMatchModel) {
  ScratchDir dir;
  const std::string path = dir.file("scatter.qcow2");
  create(path);
  std::mt19937_64 rng(11);
  std::vector<uint8_t> model(kSize, 0);
  {
    auto img = open_rw(path);
    ASSERT_TRUE(img);
    // Allocate the first 256 clusters in reverse and in shuffled pairs, so
    // host order differs from guest order in places and matches in others.
    for (uint64_t c = 64; c-- > 0;) {
      auto d = testing::random_bytes(rng, kCluster);
      ASSERT_TRUE(img->write(c * kCluster, d));
      std::copy(d.begin(), d.end(), model.begin() + c * kCluster);
    }
    auto d = testing::random_bytes(rng, 128 * kCluster);
    ASSERT_TRUE(img->write(64 * kCluster, d));  // in order: one host run
    std::copy(d.begin(), d.end(), model.begin() + 64 * kCluster);
    // Zero and discarded clusters in the middle of the in-order run.
    ASSERT_TRUE(img->write_zeroes(100 * kCluster, 2 * kCluster, false));
    std::fill_n(model.begin() + 100 * kCluster, 2 * kCluster, 0);
    ASSERT_TRUE(img->discard(150 * kCluster, kCluster));
    std::fill_n(model.begin() + 150 * kCluster, kCluster, 0);
    for (int i = 0; i < 300; ++i) {
      const uint64_t len = 1 + rng() % (20 * kCluster);
      const uint64_t off = rng() % (300 * kCluster);
      if (rng() % 2) {
        auto w = testing::random_bytes(rng, len);
        ASSERT_TRUE(img->write(off, w));
        std::copy(w.begin(), w.end(), model.begin() + off);
      } else {
        std::vector<uint8_t> got(len);
        ASSERT_TRUE(img->read(off, got));
        ASSERT_TRUE(std::equal(got.begin(), got.end(), model.begin() + off))
            << "read " << off << "+" << len;
      }
    }
    expect_content(*img, model, "before reopen");
  }
  auto img = Qcow2Image::open(path, {.read_only = true});
  ASSERT_TRUE(img);
  expect_content(**img, model, "after reopen");
  if (testing::have_tool("qemu-img")) {
    auto chk = testing::run("qemu-img check " + path);
    EXPECT_EQ(chk.status, 0) << chk.output;
  }
}

TEST(Qcow2ContiguousIo, WriteAcrossOwnedAndSnapshotSharedClustersKeepsSnapshotIntact) {
  SKIP_WITHOUT_QEMU_IMG();
  ScratchDir dir;
  const std::string path = dir.file("snap.qcow2");
  create(path);
  std::mt19937_64 rng(12);
  std::vector<uint8_t> model = testing::random_bytes(rng, 64 * kCluster);
  {
    auto img = open_rw(path);
    ASSERT_TRUE(img);
    ASSERT_TRUE(img->write(0, model));  // 64 clusters back to back
  }
  auto snap = testing::run("qemu-img snapshot -c s1 " + path);
  ASSERT_EQ(snap.status, 0) << snap.output;
  const std::vector<uint8_t> at_snapshot = model;
  {
    auto img = open_rw(path);
    ASSERT_TRUE(img);
    // Cluster 10 becomes ours again (copied); 11.. stay shared with s1.
    auto a = testing::random_bytes(rng, 100);
    ASSERT_TRUE(img->write(10 * kCluster + 5, a));
    std::copy(a.begin(), a.end(), model.begin() + 10 * kCluster + 5);
    // One request over the owned cluster and the shared ones after it.
    auto b = testing::random_bytes(rng, 6 * kCluster);
    ASSERT_TRUE(img->write(10 * kCluster + 7, b));
    std::copy(b.begin(), b.end(), model.begin() + 10 * kCluster + 7);
    std::vector<uint8_t> got(model.size());
    ASSERT_TRUE(img->read(0, got));
    EXPECT_TRUE(got == model);
  }
  auto chk = testing::run("qemu-img check " + path);
  EXPECT_EQ(chk.status, 0) << chk.output;
  // The snapshot still holds the old bytes, as qemu-img reads it.
  const std::string raw = dir.file("s1.raw");
  auto conv = testing::run("qemu-img convert -l snapshot.name=s1 -O raw " + path + " " + raw);
  ASSERT_EQ(conv.status, 0) << conv.output;
  auto rimg = Qcow2Image::open(path, {.read_only = true});
  ASSERT_TRUE(rimg);
  FILE* f = std::fopen(raw.c_str(), "rb");
  ASSERT_TRUE(f);
  std::vector<uint8_t> snap_bytes(at_snapshot.size());
  EXPECT_EQ(std::fread(snap_bytes.data(), 1, snap_bytes.size(), f), snap_bytes.size());
  std::fclose(f);
  EXPECT_TRUE(snap_bytes == at_snapshot) << "snapshot s1 changed by writes to the active image";
}

}  // namespace
}  // namespace skiff

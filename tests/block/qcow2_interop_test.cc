// Interoperability with QEMU: images qemu-img / qemu-io write (plain, with a
// backing chain, compressed with zlib and zstd) read back identically through
// our library, and compressed images we write pass qemu-img check/compare.
#include <random>

#include "block/open_image.h"
#include "block/qcow2/create.h"
#include "block/qcow2/qcow2_image.h"
#include "block_test_util.h"

namespace skiff {
namespace {

using testing::run;
using testing::ScratchDir;

std::vector<uint8_t> read_all(DiskImage& img) {
  std::vector<uint8_t> v(img.size());
  EXPECT_TRUE(img.read(0, v));
  return v;
}

std::vector<uint8_t> read_raw_file(const std::string& path) {
  std::vector<uint8_t> v;
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) return v;
  uint8_t buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) v.insert(v.end(), buf, buf + n);
  fclose(f);
  return v;
}

TEST(Qcow2Interop, ReadsWhatQemuIoWrote) {
  SKIP_WITHOUT_QEMU_IMG();
  ScratchDir dir;
  const std::string img = dir.file("q.qcow2");
  ASSERT_EQ(run("qemu-img create -f qcow2 " + img + " 16M").status, 0);
  auto w =
      run("qemu-io -f qcow2 -c 'write -P 0xab 0 64k' -c 'write -P 0x12 1000000 3000' -c "
          "'write -z 4M 128k' " +
          img);
  ASSERT_EQ(w.status, 0) << w.output;
  auto q = open_image(img, {.read_only = true});
  ASSERT_TRUE(q) << q.error().what();
  auto data = read_all(**q);
  std::vector<uint8_t> want(16 << 20, 0);
  std::fill_n(want.begin(), 65536, 0xab);
  std::fill_n(want.begin() + 1000000, 3000, 0x12);
  EXPECT_TRUE(data == want);
}

TEST(Qcow2Interop, ReadsQemuBackingChainThroughTwoLevels) {
  SKIP_WITHOUT_QEMU_IMG();
  ScratchDir dir;
  ASSERT_EQ(run("qemu-img create -f qcow2 " + dir.file("base.qcow2") + " 4M").status, 0);
  ASSERT_EQ(run("qemu-io -c 'write -P 0x11 0 2M' " + dir.file("base.qcow2")).status, 0);
  ASSERT_EQ(run("cd " + dir.path() +
                " && qemu-img create -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 && qemu-img create "
                "-f qcow2 -b mid.qcow2 -F qcow2 top.qcow2")
                .status,
            0);
  ASSERT_EQ(run("qemu-io -c 'write -P 0x22 1M 4k' " + dir.file("mid.qcow2")).status, 0);
  ASSERT_EQ(run("qemu-io -c 'write -P 0x33 1M 512' " + dir.file("top.qcow2")).status, 0);
  auto q = open_image(dir.file("top.qcow2"), {.read_only = true});
  ASSERT_TRUE(q) << q.error().what();
  auto data = read_all(**q);
  std::vector<uint8_t> want(4 << 20, 0);
  std::fill_n(want.begin(), 2 << 20, 0x11);
  std::fill_n(want.begin() + (1 << 20), 4096, 0x22);
  std::fill_n(want.begin() + (1 << 20), 512, 0x33);
  EXPECT_TRUE(data == want);
  auto st = (*q)->block_status(0, 4096);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->depth, 2);
  EXPECT_TRUE(st->data);
}

class Qcow2CompressedInterop : public ::testing::TestWithParam<std::string> {};

TEST_P(Qcow2CompressedInterop, ReadsQemuConvertCompressedImage) {
  SKIP_WITHOUT_QEMU_IMG();
  ScratchDir dir;
  const std::string raw = dir.file("src.raw");
  // Compressible but not trivial content: text-like bytes plus a random area.
  std::mt19937_64 rng(5);
  std::vector<uint8_t> content(3 << 20, 0);
  for (size_t i = 0; i < content.size() / 2; ++i)
    content[i] = static_cast<uint8_t>("skiff"[i % 5] + (i / 4096) % 7);
  auto noise = testing::random_bytes(rng, 200000);
  std::copy(noise.begin(), noise.end(), content.begin() + 2000000);
  FILE* f = fopen(raw.c_str(), "wb");
  fwrite(content.data(), 1, content.size(), f);
  fclose(f);
  const std::string out = dir.file("c.qcow2");
  std::string opts = GetParam() == "zstd" ? " -o compression_type=zstd" : "";
  auto c = run("qemu-img convert -c -f raw -O qcow2" + opts + " " + raw + " " + out);
  ASSERT_EQ(c.status, 0) << c.output;
  auto q = Qcow2Image::open(out, {.read_only = true});
  ASSERT_TRUE(q) << q.error().what();
  EXPECT_EQ((*q)->header().compression_type, GetParam() == "zstd" ? 1 : 0);
  auto st = (*q)->block_status(0, 65536);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->compressed);
  EXPECT_TRUE(read_all(**q) == content);
}

TEST_P(Qcow2CompressedInterop, CompressedImageWeWritePassesQemuCheckAndCompare) {
  SKIP_WITHOUT_QEMU_IMG();
  ScratchDir dir;
  const std::string path = dir.file("ours.qcow2");
  qcow2::CreateOptions co;
  co.size = (2 << 20) + 4096;  // last cluster is partial
  co.compression_type = GetParam() == "zstd" ? qcow2::kCompressionZstd : qcow2::kCompressionZlib;
  ASSERT_TRUE(qcow2::create(path, co));
  std::vector<uint8_t> content(co.size, 0);
  std::mt19937_64 rng(9);
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<uint8_t>((i / 100) % 13);
  auto noise = testing::random_bytes(rng, 65536);  // one incompressible cluster
  std::copy(noise.begin(), noise.end(), content.begin() + 65536);
  {
    auto q = Qcow2Image::open(path, {});
    ASSERT_TRUE(q) << q.error().what();
    for (uint64_t c = 0; c * 65536 < co.size; ++c) {
      const uint64_t n = std::min<uint64_t>(65536, co.size - c * 65536);
      auto r = (*q)->write_compressed(c, std::span(content).subspan(c * 65536, n));
      ASSERT_TRUE(r) << r.error().what();
    }
    // Overwrite part of a compressed cluster: copy-on-write decompresses it.
    std::fill_n(content.begin() + 70000 + 65536 * 2, 100, 0x5a);
    ASSERT_TRUE((*q)->write(70000 + 65536 * 2, std::span(content).subspan(70000 + 65536 * 2, 100)));
    ASSERT_TRUE((*q)->flush());
    EXPECT_TRUE(read_all(**q) == content);
  }
  const std::string raw = dir.file("want.raw");
  FILE* f = fopen(raw.c_str(), "wb");
  fwrite(content.data(), 1, content.size(), f);
  fclose(f);
  auto chk = run("qemu-img check " + path);
  EXPECT_EQ(chk.status, 0) << chk.output;
  auto cmp = run("qemu-img compare -f qcow2 -F raw " + path + " " + raw);
  EXPECT_EQ(cmp.status, 0) << cmp.output;
  // qemu-img check counts compressed clusters: ours must be seen as such.
  EXPECT_NE(chk.output.find("compressed clusters"), std::string::npos) << chk.output;
  EXPECT_EQ(chk.output.find(" 0.00% compressed"), std::string::npos) << chk.output;
  // And QEMU's own conversion back to raw agrees.
  const std::string back = dir.file("back.raw");
  ASSERT_EQ(run("qemu-img convert -O raw " + path + " " + back).status, 0);
  EXPECT_TRUE(read_raw_file(back) == content);
}

INSTANTIATE_TEST_SUITE_P(ZlibAndZstd, Qcow2CompressedInterop, ::testing::Values("zlib", "zstd"));

TEST(Qcow2Interop, ImageWithBackingWeWriteComparesEqualInQemu) {
  SKIP_WITHOUT_QEMU_IMG();
  ScratchDir dir;
  ASSERT_EQ(run("qemu-img create -f qcow2 " + dir.file("base.qcow2") + " 8M").status, 0);
  ASSERT_EQ(run("qemu-io -c 'write -P 0x44 0 8M' " + dir.file("base.qcow2")).status, 0);
  qcow2::CreateOptions co;
  co.size = 8 << 20;
  co.backing_file = "base.qcow2";
  co.backing_format = "qcow2";
  ASSERT_TRUE(qcow2::create(dir.file("top.qcow2"), co));
  std::vector<uint8_t> want(8 << 20, 0x44);
  {
    auto q = Qcow2Image::open(dir.file("top.qcow2"), {});
    ASSERT_TRUE(q) << q.error().what();
    std::vector<uint8_t> d(5000, 0x99);
    ASSERT_TRUE((*q)->write(123456, d));  // partial cluster: COW from backing
    std::fill_n(want.begin() + 123456, 5000, 0x99);
    ASSERT_TRUE((*q)->write_zeroes(1 << 20, 1 << 20, true));
    std::fill_n(want.begin() + (1 << 20), 1 << 20, 0);
    ASSERT_TRUE((*q)->discard(4 << 20, 65536));
    std::fill_n(want.begin() + (4 << 20), 65536, 0);
  }
  const std::string raw = dir.file("want.raw");
  FILE* f = fopen(raw.c_str(), "wb");
  fwrite(want.data(), 1, want.size(), f);
  fclose(f);
  auto chk = run("qemu-img check " + dir.file("top.qcow2"));
  EXPECT_EQ(chk.status, 0) << chk.output;
  auto cmp = run("qemu-img compare -F raw " + dir.file("top.qcow2") + " " + raw);
  EXPECT_EQ(cmp.status, 0) << cmp.output;
  auto info = run("qemu-img info " + dir.file("top.qcow2"));
  EXPECT_NE(info.output.find("backing file format: qcow2"), std::string::npos) << info.output;
}

}  // namespace
}  // namespace skiff

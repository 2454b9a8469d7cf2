// RawImage: reads/writes, bounds, discard and write_zeroes read as zeroes,
// block_status sees holes, read-only refuses writes; probe tells raw from qcow2.
#include "block/raw_image.h"
#include "block/open_image.h"
#include "block/qcow2/create.h"
#include "block_test_util.h"

namespace skiff {
namespace {

TEST(RawImage, WriteReadDiscardZeroesAndHoles) {
  testing::ScratchDir dir;
  const std::string p = dir.file("disk.raw");
  ASSERT_TRUE(RawImage::create(p, 4 << 20));
  auto img = RawImage::open(p, false);
  ASSERT_TRUE(img);
  std::vector<uint8_t> d(1 << 20, 0xcd);
  ASSERT_TRUE((*img)->write(1 << 20, d));
  ASSERT_TRUE((*img)->flush());
  auto st = (*img)->block_status(0, 4 << 20);
  ASSERT_TRUE(st);
  EXPECT_FALSE(st->data);
  EXPECT_EQ(st->length, 1u << 20);
  ASSERT_TRUE((*img)->discard(1 << 20, 65536));
  ASSERT_TRUE((*img)->write_zeroes((1 << 20) + 65536, 4096, false));
  std::vector<uint8_t> got(65536 + 8192);
  ASSERT_TRUE((*img)->read(1 << 20, got));
  for (size_t i = 0; i < 65536 + 4096; ++i) ASSERT_EQ(got[i], 0) << i;
  EXPECT_EQ(got[65536 + 4096], 0xcd);
  EXPECT_FALSE((*img)->read((4 << 20) - 10, std::span(got.data(), 11)));
  EXPECT_FALSE((*img)->write(~0ull - 5, std::span<const uint8_t>(d.data(), 10)));
}

TEST(RawImage, ReadOnlyRefusesWrites) {
  testing::ScratchDir dir;
  const std::string p = dir.file("disk.raw");
  ASSERT_TRUE(RawImage::create(p, 1 << 20));
  auto img = RawImage::open(p, true);
  ASSERT_TRUE(img);
  std::vector<uint8_t> d(512, 1);
  EXPECT_FALSE((*img)->write(0, d));
  EXPECT_FALSE((*img)->discard(0, 512));
}

TEST(OpenImage, ProbesQcow2MagicAndFallsBackToRaw) {
  testing::ScratchDir dir;
  qcow2::CreateOptions co;
  co.size = 1 << 20;
  ASSERT_TRUE(qcow2::create(dir.file("a.qcow2"), co));
  ASSERT_TRUE(RawImage::create(dir.file("b.raw"), 1 << 20));
  EXPECT_EQ(*probe_format(dir.file("a.qcow2")), "qcow2");
  EXPECT_EQ(*probe_format(dir.file("b.raw")), "raw");
  auto a = open_image(dir.file("a.qcow2"), {.read_only = true});
  ASSERT_TRUE(a);
  EXPECT_EQ((*a)->format(), "qcow2");
  EXPECT_FALSE(open_image(dir.file("b.raw"), {.format = "vmdk"}));
}

}  // namespace
}  // namespace skiff

// Qcow2Image::map_extent: what an I/O engine may do to the file directly.
// Only allocated data clusters of the image itself map, for writes only
// clusters it owns alone, and only when the whole range is one run in the
// file; the bytes at the returned offset are the guest's bytes.
#include <unistd.h>

#include <gtest/gtest.h>

#include "block/block_test_util.h"
#include "block/qcow2/create.h"
#include "block/qcow2/qcow2_image.h"
#include "block/raw_image.h"

namespace skiff {
namespace {

using testing::ScratchDir;

constexpr uint64_t kCluster = 65536;

std::unique_ptr<Qcow2Image> make(const std::string& path, const std::string& backing = "") {
  qcow2::CreateOptions o{.size = 16 * kCluster};
  o.backing_file = backing;
  EXPECT_TRUE(qcow2::create(path, o));
  auto img = Qcow2Image::open(path, {});
  EXPECT_TRUE(img) << img.error().what();
  return img ? std::move(*img) : nullptr;
}

TEST(Qcow2MapExtent, OnlyAllocatedDataClustersMapAndTheBytesAreThere) {
  ScratchDir dir;
  auto img = make(dir.file("a.qcow2"));
  ASSERT_TRUE(img);
  EXPECT_TRUE(img->maps_extents());
  EXPECT_FALSE(img->map_extent(0, 4096, false)) << "unallocated cluster mapped";
  EXPECT_FALSE(img->map_extent(0, 4096, true)) << "a write that needs allocation mapped";
  std::vector<uint8_t> data(kCluster);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + 1);
  ASSERT_TRUE(img->write(2 * kCluster, data));
  auto r = img->map_extent(2 * kCluster + 512, 4096, false);
  ASSERT_TRUE(r);
  auto w = img->map_extent(2 * kCluster + 512, 4096, true);
  ASSERT_TRUE(w);
  EXPECT_EQ(r->offset, w->offset);
  std::vector<uint8_t> file(4096);
  ASSERT_EQ(::pread(r->fd, file.data(), file.size(), static_cast<off_t>(r->offset)), 4096);
  EXPECT_TRUE(std::equal(file.begin(), file.end(), data.begin() + 512));
  // Across into the unallocated cluster 3: not one run.
  EXPECT_FALSE(img->map_extent(3 * kCluster - 512, 1024, false));
  // Zeroed cluster: reads as zeroes without data, so nothing to map.
  ASSERT_TRUE(img->write_zeroes(2 * kCluster, kCluster, false));
  EXPECT_FALSE(img->map_extent(2 * kCluster, 4096, false));
  // Out of range.
  EXPECT_FALSE(img->map_extent(16 * kCluster, 512, false));
}

TEST(Qcow2MapExtent, BackingDataAndReadOnlyImagesDoNotMapForWriting) {
  ScratchDir dir;
  std::string base = dir.file("base.raw");
  ASSERT_TRUE(RawImage::create(base, 16 * kCluster));
  auto img = make(dir.file("top.qcow2"), base);
  ASSERT_TRUE(img);
  EXPECT_FALSE(img->map_extent(0, 4096, false)) << "backing data mapped as the overlay's";
  std::vector<uint8_t> data(4096, 0x42);
  ASSERT_TRUE(img->write(0, data));  // copy-on-write allocates cluster 0
  EXPECT_TRUE(img->map_extent(0, 4096, true));
  img.reset();
  auto ro = Qcow2Image::open(dir.file("top.qcow2"), OpenImageOptions{.read_only = true});
  ASSERT_TRUE(ro);
  EXPECT_TRUE((*ro)->map_extent(0, 4096, false));
  EXPECT_FALSE((*ro)->map_extent(0, 4096, true));
}

}  // namespace
}  // namespace skiff

// Qcow2Image::map_extent: what an I/O engine may do to the file directly.
// Only allocated data clusters of the image itself map, for writes only
// clusters it owns alone, and only when the whole range is one run in the
// file; the bytes at the returned offset are the guest's bytes. A mapped
// extent pins its host clusters: a discard or unmapping zero of them frees
// them only once the pin is released, so no allocation reuses host bytes an
// engine may still be transferring.
#include <unistd.h>

#include <atomic>
#include <random>
#include <thread>

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

// Pins and frees (qcow2_image.h, map_extent "In-flight extents").

std::vector<uint8_t> filled(uint8_t v) {
  return std::vector<uint8_t>(kCluster, v);
}

std::vector<uint8_t> host_bytes(const HostExtent& e, size_t n) {
  std::vector<uint8_t> out(n);
  EXPECT_EQ(::pread(e.fd, out.data(), n, static_cast<off_t>(e.offset)), static_cast<ssize_t>(n));
  return out;
}

uint64_t host_of(Qcow2Image& img, uint64_t guest_offset) {
  auto s = img.block_status(guest_offset, kCluster);
  EXPECT_TRUE(s) << s.error().what();
  return s ? s->host_offset : 0;
}

TEST(Qcow2MapExtent, DiscardedClusterIsNotReusedUntilItsExtentIsReleased) {
  ScratchDir dir;
  auto img = make(dir.file("a.qcow2"));
  ASSERT_TRUE(img);
  ASSERT_TRUE(img->write(2 * kCluster, filled(0x11)));
  const uint64_t a = host_of(*img, 2 * kCluster);
  ASSERT_NE(a, 0u);
  auto ext = img->map_extent(2 * kCluster, 4096, false);  // a read in flight
  ASSERT_TRUE(ext);
  ASSERT_EQ(ext->offset, a);
  EXPECT_TRUE(ext->pin.held());

  ASSERT_TRUE(img->discard(2 * kCluster, kCluster));  // another queue discards it
  auto st = img->block_status(2 * kCluster, kCluster);
  ASSERT_TRUE(st);
  EXPECT_FALSE(st->allocated) << "the discard is visible at once";
  EXPECT_EQ(*img->refcount(a), 1u) << "pinned cluster freed under an in-flight transfer";

  // New data elsewhere must not land in the pinned cluster.
  ASSERT_TRUE(img->write(5 * kCluster, filled(0x55)));
  EXPECT_NE(host_of(*img, 5 * kCluster), a);
  EXPECT_EQ(host_bytes(*ext, 4096), std::vector<uint8_t>(4096, 0x11))
      << "the in-flight read's bytes were overwritten";

  ext->pin.reset();  // the transfer completed
  EXPECT_EQ(*img->refcount(a), 0u) << "deferred free not applied";
  ASSERT_TRUE(img->write(6 * kCluster, filled(0x66)));
  EXPECT_EQ(host_of(*img, 6 * kCluster), a) << "released cluster is free space again";
  std::vector<uint8_t> back(kCluster);
  ASSERT_TRUE(img->read(6 * kCluster, back));
  EXPECT_EQ(back, filled(0x66));
  ASSERT_TRUE(img->read(2 * kCluster, back));
  EXPECT_EQ(back, filled(0));
}

TEST(Qcow2MapExtent, ClusterPinnedByTwoTransfersIsFreedAfterTheLastAndZeroUnmapDefersToo) {
  ScratchDir dir;
  std::string path = dir.file("a.qcow2");
  auto img = make(path);
  ASSERT_TRUE(img);
  ASSERT_TRUE(img->write(0, filled(0x21)));
  ASSERT_TRUE(img->write(kCluster, filled(0x22)));
  const uint64_t c0 = host_of(*img, 0), c1 = host_of(*img, kCluster);
  ASSERT_EQ(c1, c0 + kCluster);
  // One write spanning both clusters and one read of the second.
  auto w = img->map_extent(kCluster - 512, 1024, true);
  auto r = img->map_extent(kCluster, 512, false);
  ASSERT_TRUE(w && r);
  // WRITE_ZEROES with unmap frees both clusters.
  ASSERT_TRUE(img->write_zeroes(0, 2 * kCluster, true));
  EXPECT_EQ(*img->refcount(c0), 1u);
  EXPECT_EQ(*img->refcount(c1), 1u);
  w->pin.reset();
  EXPECT_EQ(*img->refcount(c0), 0u) << "only the write pinned cluster 0";
  EXPECT_EQ(*img->refcount(c1), 1u) << "the read still pins cluster 1";
  ASSERT_TRUE(img->write(3 * kCluster, filled(0x33)));
  EXPECT_EQ(host_of(*img, 3 * kCluster), c0);
  ASSERT_TRUE(img->write(4 * kCluster, filled(0x44)));
  EXPECT_NE(host_of(*img, 4 * kCluster), c1);
  r->pin.reset();
  EXPECT_EQ(*img->refcount(c1), 0u);
  img.reset();
  // Nothing leaked, nothing referenced twice.
  if (!testing::have_tool("qemu-img")) GTEST_SKIP() << "skipped: qemu-img not installed";
  auto chk = testing::run("qemu-img check " + path);
  EXPECT_EQ(chk.status, 0) << chk.output;
}

TEST(Qcow2MapExtent, MovedPinsReleaseOnceAndRawImagesHandOutNone) {
  ScratchDir dir;
  auto img = make(dir.file("a.qcow2"));
  ASSERT_TRUE(img);
  ASSERT_TRUE(img->write(0, filled(1)));
  const uint64_t c0 = host_of(*img, 0);
  auto e = img->map_extent(0, 512, false);
  ASSERT_TRUE(e);
  ExtentPin moved = std::move(e->pin);
  EXPECT_FALSE(e->pin.held());
  e.reset();  // the moved-from pin releases nothing
  ASSERT_TRUE(img->discard(0, kCluster));
  EXPECT_EQ(*img->refcount(c0), 1u);
  moved = ExtentPin();  // assignment releases the old pin
  EXPECT_EQ(*img->refcount(c0), 0u);

  std::string raw = dir.file("r.raw");
  ASSERT_TRUE(RawImage::create(raw, kCluster));
  auto ri = RawImage::open(raw, false);
  ASSERT_TRUE(ri);
  auto re = (*ri)->map_extent(0, 512, true);
  ASSERT_TRUE(re);
  EXPECT_FALSE(re->pin.held()) << "raw mappings never change: nothing to pin";
}

// Random discards, zeroes, writes and pins from several threads at once (as
// several queue threads share one image): while a pin is held no other guest
// cluster ever maps to its host cluster; once every pin is gone the image is
// consistent (qemu-img check: no leaks, no double references).
TEST(Qcow2MapExtent, ConcurrentPinsDiscardsAndWritesNeverShareAHostCluster) {
  ScratchDir dir;
  std::string path = dir.file("a.qcow2");
  constexpr uint64_t kClusters = 16;
  auto img = make(path);
  ASSERT_TRUE(img);
  for (uint64_t g = 0; g < kClusters; ++g)
    ASSERT_TRUE(img->write(g * kCluster, filled(static_cast<uint8_t>(g + 1))));
  constexpr int kThreads = 4;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(1234 + t);
      struct Held {
        HostExtent ext;
        uint64_t guest;
      };
      std::vector<Held> held;
      for (int i = 0; i < 300; ++i) {
        const uint64_t g = rng() % kClusters;
        switch (rng() % 5) {
          case 0: {  // a request starts: pin, remember what it sees
            auto e = img->map_extent(g * kCluster, 512, rng() % 2 == 0);
            if (e) held.push_back({std::move(*e), g});
            break;
          }
          case 1:
            if (!img->discard(g * kCluster, kCluster)) ++bad;
            break;
          case 2:
            if (!img->write_zeroes(g * kCluster, kCluster, true)) ++bad;
            break;
          case 3:  // allocating (or in-place) writes
            if (!img->write(g * kCluster, filled(static_cast<uint8_t>(0x80 + t)))) ++bad;
            break;
          case 4:  // a request completes
            if (!held.empty()) held.erase(held.begin() + static_cast<long>(rng() % held.size()));
            break;
        }
        // A host cluster this thread has pinned is never mapped by another
        // guest cluster, whatever the other threads did meanwhile.
        for (const Held& h : held) {
          const uint64_t hc = h.ext.offset / kCluster;
          for (uint64_t o = 0; o < kClusters; ++o) {
            if (o == h.guest) continue;
            auto st = img->block_status(o * kCluster, kCluster);
            if (st && st->allocated && st->host_offset / kCluster == hc) ++bad;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0) << "a pinned host cluster was reused or an operation failed";
  img.reset();
  if (!testing::have_tool("qemu-img")) GTEST_SKIP() << "skipped: qemu-img not installed";
  auto chk = testing::run("qemu-img check " + path);
  EXPECT_EQ(chk.status, 0) << chk.output;
}

}  // namespace
}  // namespace skiff

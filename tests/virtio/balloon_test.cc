// VirtioBalloon against real host memory: guest RAM is an mmap'd region
// (private anonymous, or a shared memfd as --memory shared=on makes), the
// driver side is the fake split-ring driver, and "the pages went back to
// the host" is measured, not assumed: mincore(2) on the region and the
// process's RSS from /proc/self/statm.
#include "virtio/devices/balloon.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <string>

#include "virtio/fake_driver.h"

namespace skiff::virtio {
namespace {

using testing::Buf;
using testing::FakeDriver;
using testing::FakeGuest;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kBigBase = 0x40000000;  // the mmap'd RAM region's guest address
constexpr uint64_t kBigSize = 64 * kMiB;
constexpr uint16_t kRing = 16;

uint64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

// Real guest RAM: `kBigSize` bytes at kBigBase, private or memfd-shared.
struct HostRam {
  explicit HostRam(bool shared) {
    if (shared) {
      fd = ::memfd_create("skiff-balloon-test", MFD_CLOEXEC);
      EXPECT_GE(fd, 0);
      EXPECT_EQ(::ftruncate(fd, kBigSize), 0);
      host = ::mmap(nullptr, kBigSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    } else {
      host = ::mmap(nullptr, kBigSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    EXPECT_NE(host, MAP_FAILED);
  }
  ~HostRam() {
    ::munmap(host, kBigSize);
    if (fd >= 0) ::close(fd);
  }
  uint8_t* at(uint64_t gpa) const { return static_cast<uint8_t*>(host) + (gpa - kBigBase); }
  void touch(uint64_t gpa, uint64_t len) const { std::memset(at(gpa), 0xa5, len); }
  // Pages of [gpa, gpa + len) resident in this process (mincore).
  uint64_t resident_pages(uint64_t gpa, uint64_t len) const {
    std::vector<unsigned char> vec(len / 4096);
    EXPECT_EQ(::mincore(at(gpa), len, vec.data()), 0);
    uint64_t n = 0;
    for (auto v : vec) n += v & 1;
    return n;
  }
  void* host = nullptr;
  int fd = -1;
};

struct BalloonFixture : ::testing::Test {
  // Each queue's rings and data in their own quarter of the fake RAM.
  static uint64_t ring_base(int q) { return FakeGuest::kRamBase + q * 0x40000ull; }

  void start(BalloonOptions opts, bool shared = false,
             uint64_t features = feature_bit(kBalloonFeatureStatsVq)) {
    ram = std::make_unique<HostRam>(shared);
    std::vector<MemoryRegion> regions{{FakeGuest::kRamBase, guest.ram.size(), guest.ram.data()},
                                      {kBigBase, kBigSize, static_cast<uint8_t*>(ram->host)}};
    regions[1].fd = ram->fd;
    guest.mem = *GuestMemory::create(regions);
    auto b = VirtioBalloon::create(opts);
    ASSERT_TRUE(b) << b.error().message;
    dev = std::move(*b);
    dev->set_memory(&guest.mem);
    dev->set_interrupt([this](InterruptKind k, uint16_t q) {
      if (k == InterruptKind::kUsedBuffer) ++used_irqs[q];
      if (k == InterruptKind::kConfigChange) ++config_irqs;
    });
    dev->set_status(kStatusAcknowledge | kStatusDriver);
    dev->set_driver_features(kCommonFeatures | features);
    dev->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    ASSERT_TRUE(dev->status() & kStatusFeaturesOk);
    for (uint16_t q = 0; q < dev->num_queues(); ++q) {
      drivers.push_back(std::make_unique<FakeDriver>(guest, kRing, ring_base(q)));
      drivers.back()->configure(*dev->queue(q));
      pfn_bufs.push_back(drivers.back()->alloc(1024));
    }
    dev->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    ASSERT_TRUE(dev->activated());
  }

  // Linux's tell_host(): PFN arrays of up to 256 entries, one per request.
  void send_pfns(uint16_t q, const std::vector<uint32_t>& pfns) {
    for (size_t i = 0; i < pfns.size(); i += 256) {
      size_t n = std::min<size_t>(256, pfns.size() - i);
      std::memcpy(guest.host(pfn_bufs[q], n * 4).data(), &pfns[i], n * 4);
      drivers[q]->add_chain({{pfn_bufs[q], static_cast<uint32_t>(n * 4), false}});
      dev->process_queue(q);
    }
  }
  static std::vector<uint32_t> pfns_of(uint64_t gpa, uint64_t len, uint64_t step = 4096) {
    std::vector<uint32_t> v;
    for (uint64_t a = gpa; a < gpa + len; a += step) v.push_back(static_cast<uint32_t>(a >> 12));
    return v;
  }
  uint32_t read_u32_config(uint64_t off) {
    uint32_t v = 0;
    EXPECT_TRUE(dev->read_config(off, std::span(reinterpret_cast<uint8_t*>(&v), 4)));
    return v;
  }

  FakeGuest guest{1 << 20};
  std::unique_ptr<HostRam> ram;
  std::unique_ptr<VirtioBalloon> dev;
  std::vector<std::unique_ptr<FakeDriver>> drivers;
  std::vector<uint64_t> pfn_bufs;
  std::map<uint16_t, int> used_irqs;
  int config_irqs = 0;
};

void expect_inflate_returns_memory(BalloonFixture& f, bool shared) {
  constexpr uint64_t kTouched = 32 * kMiB;
  const uint64_t gpa = kBigBase + 8 * kMiB;
  f.ram->touch(gpa, kTouched);
  ASSERT_EQ(f.ram->resident_pages(gpa, kTouched), kTouched / 4096);
  uint64_t rss_before = rss_bytes();

  f.send_pfns(0, f.pfns_of(gpa, kTouched));

  EXPECT_FALSE(f.dev->needs_reset());
  EXPECT_EQ(f.drivers[0]->used_idx(), kTouched / 4096 / 256);
  EXPECT_EQ(f.dev->counters().inflated_pages.load(), kTouched / 4096);
  EXPECT_EQ(f.dev->counters().discard_errors.load(), 0u);
  EXPECT_EQ(f.ram->resident_pages(gpa, kTouched), 0u);
  // RSS drops by about the ballooned amount (other allocations of this
  // process may move it by a little).
  uint64_t rss_after = rss_bytes();
  EXPECT_GE(rss_before - std::min(rss_before, rss_after), kTouched * 9 / 10)
      << "RSS " << rss_before << " -> " << rss_after;
  if (shared) {
    struct stat st {};
    ASSERT_EQ(::fstat(f.ram->fd, &st), 0);
    EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, kMiB) << "the memfd still holds pages";
  }
  // Untouched neighbours stay as they were.
  EXPECT_EQ(*f.ram->at(gpa - 1), 0u);  // never touched: reads zero either way

  // Deflate: nothing to do for the host; the pages come back (zeroed) when
  // the guest touches them.
  f.send_pfns(1, f.pfns_of(gpa, kTouched));
  EXPECT_FALSE(f.dev->needs_reset());
  EXPECT_EQ(f.dev->counters().deflated_pages.load(), kTouched / 4096);
  EXPECT_EQ(f.ram->at(gpa)[0], 0u);
  f.ram->touch(gpa, kTouched);
  EXPECT_EQ(f.ram->resident_pages(gpa, kTouched), kTouched / 4096);
}

TEST_F(BalloonFixture, InflateReturnsPrivateMemoryToTheHost) {
  start({});
  expect_inflate_returns_memory(*this, false);
}

TEST_F(BalloonFixture, InflateReturnsSharedMemfdMemoryToTheHost) {
  start({}, /*shared=*/true);
  expect_inflate_returns_memory(*this, true);
}

TEST_F(BalloonFixture, ScatteredPfnsDiscardOnlyThosePages) {
  start({});
  const uint64_t gpa = kBigBase;
  ram->touch(gpa, 4 * kMiB);
  send_pfns(0, pfns_of(gpa, 4 * kMiB, 8192));  // every other page
  EXPECT_EQ(dev->counters().inflated_pages.load(), 512u);
  EXPECT_EQ(ram->resident_pages(gpa, 4 * kMiB), 512u);
  EXPECT_EQ(ram->at(gpa)[0], 0u);
  EXPECT_EQ(ram->at(gpa + 4096)[0], 0xa5u);
}

TEST_F(BalloonFixture, PfnOutsideRamIsIgnoredAndCounted) {
  start({});
  ram->touch(kBigBase, 4096);
  // Address 0 (not RAM here), just past the region, and 0xffffffff.
  send_pfns(0, {0, static_cast<uint32_t>((kBigBase + kBigSize) >> 12), 0xffffffffu,
                static_cast<uint32_t>(kBigBase >> 12)});
  EXPECT_FALSE(dev->needs_reset());
  EXPECT_EQ(dev->counters().ignored_pfns.load(), 3u);
  EXPECT_EQ(dev->counters().inflated_pages.load(), 1u);
  EXPECT_EQ(ram->resident_pages(kBigBase, 4096), 0u);
}

TEST_F(BalloonFixture, PfnStraddlingTwoBuffersIsReassembled) {
  start({});
  ram->touch(kBigBase, 8192);
  uint32_t pfns[2] = {static_cast<uint32_t>(kBigBase >> 12),
                      static_cast<uint32_t>((kBigBase >> 12) + 1)};
  uint64_t a = drivers[0]->alloc(3), b = drivers[0]->alloc(5);
  std::memcpy(guest.host(a, 3).data(), pfns, 3);
  std::memcpy(guest.host(b, 5).data(), reinterpret_cast<uint8_t*>(pfns) + 3, 5);
  drivers[0]->add_chain({{a, 3, false}, {b, 5, false}});
  dev->process_queue(0);
  EXPECT_FALSE(dev->needs_reset());
  EXPECT_EQ(dev->counters().inflated_pages.load(), 2u);
  EXPECT_EQ(ram->resident_pages(kBigBase, 8192), 0u);
}

TEST_F(BalloonFixture, TargetAndActualInConfigSpace) {
  start({.initial_target_bytes = 16 * kMiB});
  EXPECT_EQ(read_u32_config(0), 16 * kMiB / 4096);
  EXPECT_EQ(read_u32_config(4), 0u);
  EXPECT_EQ(dev->config_size(), 8u);

  uint32_t gen = dev->config_generation();
  ASSERT_TRUE(dev->set_target(40 * kMiB + 123));  // rounded down to pages
  EXPECT_EQ(read_u32_config(0), 40 * kMiB / 4096);
  EXPECT_EQ(dev->target_bytes(), 40 * kMiB);
  EXPECT_EQ(config_irqs, 1);
  EXPECT_NE(dev->config_generation(), gen);

  uint32_t actual = 1234;
  ASSERT_TRUE(dev->write_config(4, std::span(reinterpret_cast<uint8_t*>(&actual), 4)));
  EXPECT_EQ(dev->actual_bytes(), 1234u * 4096);
  EXPECT_EQ(read_u32_config(4), 1234u);
  // num_pages belongs to the device.
  uint32_t bogus = 7;
  EXPECT_FALSE(dev->write_config(0, std::span(reinterpret_cast<uint8_t*>(&bogus), 4)));
  EXPECT_EQ(read_u32_config(0), 40 * kMiB / 4096);

  EXPECT_FALSE(dev->set_target(uint64_t{1} << 45));  // 2^33 pages: beyond le32
  dev->set_status(0);  // reset: the driver's balloon is gone, the target stays
  EXPECT_EQ(dev->actual_bytes(), 0u);
  EXPECT_EQ(read_u32_config(4), 0u);
  EXPECT_EQ(read_u32_config(0), 40 * kMiB / 4096);
}

// One struct virtio_balloon_stat list, as Linux's update_balloon_stats builds it.
std::vector<uint8_t> stats_buffer(const std::vector<std::pair<uint16_t, uint64_t>>& entries) {
  std::vector<uint8_t> out(entries.size() * 10);
  for (size_t i = 0; i < entries.size(); ++i) {
    std::memcpy(&out[i * 10], &entries[i].first, 2);
    std::memcpy(&out[i * 10 + 2], &entries[i].second, 8);
  }
  return out;
}

TEST_F(BalloonFixture, StatsAreReadHeldAndRequestedAgainAtTheInterval) {
  start({.stats_interval_s = 1});
  auto events = dev->backend_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].queue, 2);
  auto post = [&](const std::vector<uint8_t>& bytes) {
    uint64_t a = drivers[2]->alloc(static_cast<uint32_t>(bytes.size()));
    std::memcpy(guest.host(a, bytes.size()).data(), bytes.data(), bytes.size());
    drivers[2]->add_chain({{a, static_cast<uint32_t>(bytes.size()), false}});
    dev->process_queue(2);
  };
  post(stats_buffer({{4, 100 * kMiB}, {5, 512 * kMiB}, {77, 1}}));
  EXPECT_FALSE(dev->needs_reset());
  EXPECT_EQ(dev->stat(4), 100 * kMiB);
  EXPECT_EQ(dev->stat(5), 512 * kMiB);
  EXPECT_FALSE(dev->stat(0).has_value());
  EXPECT_EQ(dev->counters().stats_updates.load(), 1u);
  EXPECT_EQ(drivers[2]->used_idx(), 0) << "the device holds the stats buffer";

  // The polling tick (what the transport's I/O thread waits for).
  pollfd p{events[0].fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 3000), 1) << "statistics timer did not fire";
  dev->process_queue(2);
  EXPECT_EQ(drivers[2]->used_idx(), 1) << "the held buffer goes back as a refresh request";
  EXPECT_EQ(used_irqs[2], 1);

  post(stats_buffer({{4, 90 * kMiB}}));
  EXPECT_EQ(dev->stat(4), 90 * kMiB);
  EXPECT_EQ(dev->counters().stats_updates.load(), 2u);
}

TEST_F(BalloonFixture, NoPollingTimerWithoutAnInterval) {
  start({});
  EXPECT_TRUE(dev->backend_events().empty());
}

TEST_F(BalloonFixture, FreePageReportingDiscardsReportedBlocks) {
  start({.free_page_reporting = true}, false,
        feature_bit(kBalloonFeatureStatsVq) | feature_bit(kBalloonFeatureReporting));
  ASSERT_EQ(dev->num_queues(), 4);
  const uint64_t a = kBigBase + 4 * kMiB, b = kBigBase + 16 * kMiB;
  ram->touch(kBigBase, 32 * kMiB);
  // Two 2 MiB blocks (pageblock order), device-writable as Linux adds them.
  drivers[3]->add_chain({{a, 2 * kMiB, true}, {b, 2 * kMiB, true}});
  dev->process_queue(3);
  EXPECT_FALSE(dev->needs_reset());
  EXPECT_EQ(drivers[3]->used_idx(), 1);
  EXPECT_EQ(dev->counters().reported_bytes.load(), 4 * kMiB);
  EXPECT_EQ(ram->resident_pages(a, 2 * kMiB), 0u);
  EXPECT_EQ(ram->resident_pages(b, 2 * kMiB), 0u);
  EXPECT_EQ(ram->resident_pages(kBigBase, 4 * kMiB), 1024u);
}

TEST_F(BalloonFixture, ReportingQueueIsTwoWithoutStats) {
  start({.free_page_reporting = true}, false, feature_bit(kBalloonFeatureReporting));
  ram->touch(kBigBase, 2 * kMiB);
  drivers[2]->add_chain({{kBigBase, 2 * kMiB, true}});
  dev->process_queue(2);
  EXPECT_FALSE(dev->needs_reset());
  EXPECT_EQ(dev->counters().reported_bytes.load(), 2 * kMiB);
  EXPECT_EQ(ram->resident_pages(kBigBase, 2 * kMiB), 0u);
}

TEST_F(BalloonFixture, FeaturesFollowTheOptions) {
  start({.deflate_on_oom = true});
  EXPECT_TRUE(dev->device_features() & feature_bit(kBalloonFeatureDeflateOnOom));
  EXPECT_TRUE(dev->device_features() & feature_bit(kBalloonFeatureStatsVq));
  EXPECT_FALSE(dev->device_features() & feature_bit(kBalloonFeatureReporting));
  EXPECT_TRUE(dev->device_features() & feature_bit(kBalloonFeatureMustTellHost));
  EXPECT_EQ(dev->num_queues(), 3);
}

// --- hostile drivers: NEEDS_RESET, nothing discarded, no crash

TEST_F(BalloonFixture, WritableBufferOnInflateNeedsReset) {
  start({});
  ram->touch(kBigBase, 4096);
  uint32_t pfn = kBigBase >> 12;
  std::memcpy(guest.host(pfn_bufs[0], 4).data(), &pfn, 4);
  drivers[0]->add_chain({{pfn_bufs[0], 4, true}});
  dev->process_queue(0);
  EXPECT_TRUE(dev->needs_reset());
  EXPECT_EQ(ram->resident_pages(kBigBase, 4096), 1u);
}

TEST_F(BalloonFixture, PartialPfnNeedsReset) {
  start({});
  drivers[1]->add_chain({{pfn_bufs[1], 6, false}});
  dev->process_queue(1);
  EXPECT_TRUE(dev->needs_reset());
  EXPECT_EQ(drivers[1]->used_idx(), 0);
}

TEST_F(BalloonFixture, OversizedPfnArrayNeedsReset) {
  start({});
  ram->touch(kBigBase, 4096);
  // 256 KiB + 4 of PFNs, in the big region (all pointing at the first page).
  uint64_t len = VirtioBalloon::kMaxPfnBytes + 4;
  uint64_t at = kBigBase + 32 * kMiB;
  for (uint64_t off = 0; off < len; off += 4) {
    uint32_t pfn = kBigBase >> 12;
    std::memcpy(ram->at(at + off), &pfn, 4);
  }
  drivers[0]->add_chain({{at, static_cast<uint32_t>(len), false}});
  dev->process_queue(0);
  EXPECT_TRUE(dev->needs_reset());
  EXPECT_EQ(ram->resident_pages(kBigBase, 4096), 1u);
}

TEST_F(BalloonFixture, SecondStatsBufferNeedsReset) {
  start({});
  auto bytes = stats_buffer({{4, 1}});
  for (int i = 0; i < 2; ++i) {
    uint64_t a = drivers[2]->alloc(10);
    std::memcpy(guest.host(a, 10).data(), bytes.data(), 10);
    drivers[2]->add_chain({{a, 10, false}});
  }
  dev->process_queue(2);
  EXPECT_TRUE(dev->needs_reset());
}

TEST_F(BalloonFixture, StatsBufferOfPartialEntriesNeedsReset) {
  start({});
  uint64_t a = drivers[2]->alloc(15);
  drivers[2]->add_chain({{a, 15, false}});
  dev->process_queue(2);
  EXPECT_TRUE(dev->needs_reset());
}

TEST_F(BalloonFixture, ReadableReportingBufferNeedsReset) {
  start({.free_page_reporting = true}, false,
        feature_bit(kBalloonFeatureStatsVq) | feature_bit(kBalloonFeatureReporting));
  ram->touch(kBigBase, 2 * kMiB);
  drivers[3]->add_chain({{kBigBase, 2 * kMiB, false}});
  dev->process_queue(3);
  EXPECT_TRUE(dev->needs_reset());
  EXPECT_EQ(ram->resident_pages(kBigBase, 2 * kMiB), 512u);
}

TEST_F(BalloonFixture, DeviceWorksAgainAfterReset) {
  start({});
  drivers[0]->add_chain({{pfn_bufs[0], 6, false}});
  dev->process_queue(0);
  ASSERT_TRUE(dev->needs_reset());
  dev->set_status(0);
  EXPECT_FALSE(dev->needs_reset());
}

// --- huge-page RAM: only whole host pages can be freed

// The 2 MiB hugetlb pool grown by `n` pages for one test, shrunk back by as
// many afterwards (relative, so a concurrent test's own change survives).
struct HugePagePool {
  static constexpr const char* kNr = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
  explicit HugePagePool(long n) : n_(n) {
    long old = read(kNr);
    if (old < 0 || !write(kNr, old + n)) {
      why = "cannot grow the 2 MiB hugetlb pool (needs root and /sys/kernel/mm/hugepages)";
      return;
    }
    grown_ = true;
    if (read("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages") < n)
      why = "the host could not reserve 4 free 2 MiB pages";
  }
  ~HugePagePool() {
    if (grown_) write(kNr, std::max(0L, read(kNr) - n_));
  }
  static long read(const char* path) {
    std::ifstream f(path);
    long v = -1;
    f >> v;
    return v;
  }
  static bool write(const char* path, long v) {
    std::ofstream f(path);
    f << v;
    f.flush();
    return f.good();
  }
  std::string why;  // empty: usable
  long n_;
  bool grown_ = false;
};

uint64_t file_bytes(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

TEST_F(BalloonFixture, HugePageRamIsFreedInWholeHostPages) {
  constexpr uint64_t kHuge = 2 * kMiB;
  HugePagePool pool(4);
  if (!pool.why.empty()) GTEST_SKIP() << "skipped: " << pool.why;
  int fd =
      ::memfd_create("skiff-balloon-huge", MFD_CLOEXEC | MFD_HUGETLB | (21u << MAP_HUGE_SHIFT));
  if (fd < 0) GTEST_SKIP() << "skipped: memfd_create(MFD_HUGETLB) failed: " << std::strerror(errno);
  ASSERT_EQ(::ftruncate(fd, 4 * kHuge), 0);
  void* host = ::mmap(nullptr, 4 * kHuge, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(host, MAP_FAILED);
  std::memset(host, 0xa5, 4 * kHuge);
  ASSERT_EQ(file_bytes(fd), 4 * kHuge);

  start({}, false, feature_bit(kBalloonFeatureStatsVq) | feature_bit(kBalloonFeatureMustTellHost));
  MemoryRegion huge{kBigBase + kBigSize, 4 * kHuge, static_cast<uint8_t*>(host)};
  huge.fd = fd;
  guest.mem = *GuestMemory::create({{FakeGuest::kRamBase, guest.ram.size(), guest.ram.data()},
                                    {kBigBase, kBigSize, static_cast<uint8_t*>(ram->host)},
                                    huge});
  const uint64_t base = kBigBase + kBigSize;
  ASSERT_EQ(guest.mem.page_size(base), kHuge);
  EXPECT_EQ(guest.mem.page_size(kBigBase), 4096u);

  // Page 0: all but its last 4 KiB piece: nothing can be freed yet.
  send_pfns(0, pfns_of(base, kHuge - 4096));
  EXPECT_EQ(file_bytes(fd), 4 * kHuge);
  // The last piece completes it.
  send_pfns(0, pfns_of(base + kHuge - 4096, 4096));
  EXPECT_EQ(file_bytes(fd), 3 * kHuge);
  // Page 1: the first half in, out again (deflate), then the second half:
  // never all of it at once, so it stays.
  send_pfns(0, pfns_of(base + kHuge, kHuge / 2));
  send_pfns(1, pfns_of(base + kHuge, kHuge / 2));
  send_pfns(0, pfns_of(base + kHuge + kHuge / 2, kHuge / 2));
  EXPECT_EQ(file_bytes(fd), 3 * kHuge);
  // Pages 2 and 3 in requests of 256 PFNs: freed as their last piece lands.
  send_pfns(0, pfns_of(base + 2 * kHuge, 2 * kHuge));
  EXPECT_EQ(file_bytes(fd), kHuge);
  EXPECT_FALSE(dev->needs_reset());
  EXPECT_EQ(dev->counters().discard_errors.load(), 0u);
  ::munmap(host, 4 * kHuge);
  ::close(fd);
}

TEST_F(BalloonFixture, HugePagePiecesAreNotTrackedWithoutMustTellHost) {
  constexpr uint64_t kHuge = 2 * kMiB;
  HugePagePool pool(1);
  if (!pool.why.empty()) GTEST_SKIP() << "skipped: " << pool.why;
  int fd =
      ::memfd_create("skiff-balloon-huge", MFD_CLOEXEC | MFD_HUGETLB | (21u << MAP_HUGE_SHIFT));
  if (fd < 0) GTEST_SKIP() << "skipped: memfd_create(MFD_HUGETLB) failed: " << std::strerror(errno);
  ASSERT_EQ(::ftruncate(fd, kHuge), 0);
  void* host = ::mmap(nullptr, kHuge, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(host, MAP_FAILED);
  std::memset(host, 0xa5, kHuge);
  start({});  // the driver does not promise to tell before reusing pages
  MemoryRegion huge{kBigBase + kBigSize, kHuge, static_cast<uint8_t*>(host)};
  huge.fd = fd;
  guest.mem = *GuestMemory::create({{FakeGuest::kRamBase, guest.ram.size(), guest.ram.data()},
                                    {kBigBase, kBigSize, static_cast<uint8_t*>(ram->host)},
                                    huge});
  send_pfns(0, pfns_of(kBigBase + kBigSize, kHuge));  // two 1 MiB requests
  EXPECT_EQ(file_bytes(fd), kHuge) << "a piecewise huge page must stay";
  EXPECT_EQ(dev->counters().inflated_pages.load(), kHuge / 4096);
  ::munmap(host, kHuge);
  ::close(fd);
}

// --- GuestMemory::discard, the host side of the balloon

TEST(GuestMemoryDiscard, RefusesUnalignedAndNonRamRanges) {
  HostRam ram(false);
  auto mem = *GuestMemory::create({{kBigBase, kBigSize, static_cast<uint8_t*>(ram.host)}});
  EXPECT_FALSE(mem.discard(kBigBase + 1, 4096));
  EXPECT_FALSE(mem.discard(kBigBase, 100));
  EXPECT_FALSE(mem.discard(kBigBase + kBigSize - 4096, 8192));
  EXPECT_FALSE(mem.discard(0, 4096));
  EXPECT_TRUE(mem.discard(kBigBase, 0));
  ram.touch(kBigBase, 8192);
  EXPECT_TRUE(mem.discard(kBigBase, 8192));
  EXPECT_EQ(ram.resident_pages(kBigBase, 8192), 0u);
}

TEST(GuestMemoryDiscard, GpaOfIsTheInverseOfSlice) {
  HostRam ram(false);
  auto mem = *GuestMemory::create({{kBigBase, kBigSize, static_cast<uint8_t*>(ram.host)}});
  auto s = *mem.slice(kBigBase + 12345, 100);
  EXPECT_EQ(mem.gpa_of(s), kBigBase + 12345);
  uint8_t outside[4];
  EXPECT_FALSE(mem.gpa_of(std::span<const uint8_t>(outside, 4)).has_value());
  EXPECT_FALSE(mem.gpa_of(std::span<const uint8_t>(ram.at(kBigBase + kBigSize - 2), 4)));
}

}  // namespace
}  // namespace skiff::virtio

// The body shared by the libFuzzer target (balloon_fuzz.cc) and the
// GCC-built mutation test (tests/virtio/balloon_fuzz_test.cc): arbitrary
// bytes become the balloon's negotiated features, a target, a driver write
// of `actual` and the contents of a two-region guest RAM (with a hole
// between the regions) holding every queue's split ring; then each queue is
// processed as the device thread would. Errors (NEEDS_RESET) are expected;
// what must never happen is a crash, a sanitizer report, a discard outside
// guest RAM (GuestMemory refuses it; the RAM is mmap'd, so a stray
// madvise would hit unmapped or foreign memory under ASan), or counters
// that claim more pages than the driver sent.
//
// Input layout (missing bytes read as zero):
//   [0]     bit 0 STATS_VQ, bit 1 REPORTING, bit 2 EVENT_IDX, bit 3 INDIRECT_DESC
//   [1]     queue processing order seed
//   [2..5]  set_target(bytes = u32 << 12)
//   [6..9]  driver write of config `actual`
//   [10..]  guest RAM contents, region A then region B; queue q's rings at
//           region A + q * 0x400 (desc +0, avail +0x100, used +0x200), 16 entries
#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <cstring>

#include "memory/guest_memory.h"
#include "virtio/devices/balloon.h"

namespace skiff::fuzz {

inline constexpr uint64_t kBalloonRegionA = 0x10000;
inline constexpr uint64_t kBalloonRegionB = 0x20000;
inline constexpr size_t kBalloonRegionSize = 0x8000;
inline constexpr size_t kBalloonHeaderBytes = 10;

// -1: a property broke; otherwise 1 if the device ended in NEEDS_RESET, 0 if not.
inline int exercise_balloon(const uint8_t* data, size_t size) {
  auto byte = [&](size_t i) -> uint8_t { return i < size ? data[i] : 0; };
  auto u32 = [&](size_t i) -> uint32_t {
    return static_cast<uint32_t>(byte(i) | byte(i + 1) << 8 | byte(i + 2) << 16 |
                                 static_cast<uint32_t>(byte(i + 3)) << 24);
  };
  struct Ram {
    void* p = ::mmap(nullptr, 2 * kBalloonRegionSize, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ~Ram() {
      if (p != MAP_FAILED) ::munmap(p, 2 * kBalloonRegionSize);
    }
  } ram;
  if (ram.p == MAP_FAILED) return 0;
  auto* a = static_cast<uint8_t*>(ram.p);
  if (size > kBalloonHeaderBytes)
    std::memcpy(a, data + kBalloonHeaderBytes,
                std::min(size - kBalloonHeaderBytes, 2 * kBalloonRegionSize));
  auto mem = GuestMemory::create({{kBalloonRegionA, kBalloonRegionSize, a},
                                  {kBalloonRegionB, kBalloonRegionSize, a + kBalloonRegionSize}});
  if (!mem) return 0;

  uint8_t f = byte(0);
  auto dev =
      virtio::VirtioBalloon::create({.free_page_reporting = (f & 2) != 0, .stats_interval_s = 0});
  if (!dev) return -1;
  virtio::VirtioBalloon& b = **dev;
  b.set_memory(&*mem);
  b.set_interrupt([](virtio::InterruptKind, uint16_t) {});
  uint64_t features = virtio::kCommonFeatures & ~virtio::feature_bit(virtio::kFeatureEventIdx) &
                      ~virtio::feature_bit(virtio::kFeatureIndirectDesc);
  if (f & 1) features |= virtio::feature_bit(virtio::kBalloonFeatureStatsVq);
  if (f & 2) features |= virtio::feature_bit(virtio::kBalloonFeatureReporting);
  if (f & 4) features |= virtio::feature_bit(virtio::kFeatureEventIdx);
  if (f & 8) features |= virtio::feature_bit(virtio::kFeatureIndirectDesc);
  b.set_status(virtio::kStatusAcknowledge | virtio::kStatusDriver);
  b.set_driver_features(features);
  b.set_status(virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk);
  for (uint16_t q = 0; q < b.num_queues(); ++q) {
    virtio::Queue* queue = b.queue(q);
    queue->set_size(16);
    queue->set_desc_table(kBalloonRegionA + q * 0x400ull);
    queue->set_avail_ring(kBalloonRegionA + q * 0x400ull + 0x100);
    queue->set_used_ring(kBalloonRegionA + q * 0x400ull + 0x200);
    queue->set_ready(true);
  }
  b.set_status(virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk |
               virtio::kStatusDriverOk);
  (void)b.set_target(uint64_t{u32(2)} << 12);
  uint32_t actual = u32(6);
  (void)b.write_config(4, std::span(reinterpret_cast<const uint8_t*>(&actual), 4));

  uint8_t order = byte(1);
  for (int round = 0; round < 2; ++round)
    for (uint16_t i = 0; i < b.num_queues(); ++i)
      b.process_queue(static_cast<uint16_t>((i + order) % b.num_queues()));

  // Each queue takes at most 2 * 16 chains here, each under kMaxPfnBytes.
  const auto& c = b.counters();
  uint64_t bound = 2ull * 16 * 4 * (virtio::VirtioBalloon::kMaxPfnBytes / 4);
  if (c.inflated_pages + c.deflated_pages + c.ignored_pfns > bound) return -1;
  if (c.reported_bytes > 2ull * 16 * 2 * kBalloonRegionSize * 16) return -1;
  return b.needs_reset() ? 1 : 0;
}

}  // namespace skiff::fuzz

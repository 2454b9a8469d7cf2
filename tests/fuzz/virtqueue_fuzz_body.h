// The body shared by the libFuzzer target (virtqueue_fuzz.cc) and the
// GCC-built mutation test (tests/virtio/fuzz_mutation_test.cc): arbitrary
// bytes become a queue configuration and the contents of a two-region guest
// RAM (with a hole between the regions); the device side then walks the
// rings as a device would. Errors are expected; what must never happen is a
// crash, a sanitizer report, or a span that points outside guest RAM.
//
// Input layout (missing bytes read as zero):
//   [0]     queue size = 1 << (b % 9)          (1 .. 256)
//   [1]     bit 0 EVENT_IDX, bit 1 INDIRECT_DESC, bit 2 start indices at [2..3]
//   [2..3]  start index for next_avail / next_used
//   [4..9]  desc / avail / used ring offsets from kRegionA (u16 each)
//   [10..]  guest RAM contents, region A then region B
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "memory/guest_memory.h"
#include "virtio/queue.h"

namespace skiff::fuzz {

inline constexpr uint64_t kVqRegionA = 0x10000;
inline constexpr uint64_t kVqRegionB = 0x20000;
inline constexpr size_t kVqRegionSize = 0x8000;
inline constexpr size_t kVqHeaderBytes = 10;

// Returns -1 if the walker produced a buffer outside guest RAM or
// inconsistent totals (the property under test); otherwise the number of
// chains it accepted (so a driver can tell whether inputs explore anything).
inline int exercise_virtqueue(const uint8_t* data, size_t size) {
  auto byte = [&](size_t i) -> uint8_t { return i < size ? data[i] : 0; };
  auto u16 = [&](size_t i) -> uint16_t {
    return static_cast<uint16_t>(byte(i) | byte(i + 1) << 8);
  };

  // Page-aligned host memory, as GuestRam provides.
  struct Ram {
    uint8_t* p = static_cast<uint8_t*>(std::aligned_alloc(4096, 2 * kVqRegionSize));
    ~Ram() { std::free(p); }
  } ram;
  if (ram.p == nullptr) return 0;
  std::memset(ram.p, 0, 2 * kVqRegionSize);
  if (size > kVqHeaderBytes)
    std::memcpy(ram.p, data + kVqHeaderBytes, std::min(size - kVqHeaderBytes, 2 * kVqRegionSize));
  uint8_t* a = ram.p;
  uint8_t* b = ram.p + kVqRegionSize;
  auto mem = GuestMemory::create({{kVqRegionA, kVqRegionSize, a}, {kVqRegionB, kVqRegionSize, b}});
  if (!mem) return 0;

  auto queue_size = static_cast<uint16_t>(1u << (byte(0) % 9));
  virtio::Queue q(256);
  q.set_size(queue_size);
  q.set_desc_table(kVqRegionA + u16(4));
  q.set_avail_ring(kVqRegionA + u16(6));
  q.set_used_ring(kVqRegionA + u16(8));
  if (!q.activate(*mem, byte(1) & 1, byte(1) & 2)) return 0;
  if (byte(1) & 4) q.set_ring_positions(u16(2), u16(2));

  auto inside = [&](std::span<uint8_t> s) {
    auto lo = reinterpret_cast<uintptr_t>(s.data());
    auto hi = lo + s.size();
    auto in = [&](uint8_t* base) {
      auto rb = reinterpret_cast<uintptr_t>(base);
      return lo >= rb && hi <= rb + kVqRegionSize && hi >= lo;
    };
    return in(a) || in(b);
  };

  virtio::DescriptorChain chain;
  int chains = 0;
  for (int i = 0; i < 2 * queue_size + 4; ++i) {
    auto r = q.pop_into(chain);
    if (!r || !*r) break;
    uint64_t readable = 0, writable = 0;
    for (auto s : chain.readable()) {
      if (!inside(s) || s.empty()) return -1;
      readable += s.size();
    }
    for (auto s : chain.writable()) {
      if (!inside(s) || s.empty()) return -1;
      writable += s.size();
    }
    if (readable != chain.readable_bytes() || writable != chain.writable_bytes()) return -1;
    if (readable + writable > (1ull << 32)) return -1;
    if (chain.head() >= queue_size) return -1;
    // Touch every byte the device may touch, so ASan sees any stray span.
    for (auto s : chain.writable()) std::memset(s.data(), 0xa5, s.size());
    if (!q.add_used(chain.head(), static_cast<uint32_t>(writable))) return -1;
    (void)q.needs_notification();
    ++chains;
  }
  return chains;
}

}  // namespace skiff::fuzz

// Places guest RAM in guest physical space: from 0 up to the 32-bit PCI hole,
// then from 4 GiB (layout.h). Memory zones (--memory-zone) are placed one
// after another in the order given, so RAM stays contiguous apart from the
// hole and a zone that does not fit below the hole is split at it.
#pragma once

#include <algorithm>
#include <span>
#include <vector>

#include "arch/x86/layout.h"
#include "memory/guest_ram.h"

namespace skiff::x86 {

// The guest physical ranges of each piece of RAM of the given sizes, in
// order: one or two ranges per piece (two when it straddles the hole).
inline std::vector<std::vector<RamRange>> zone_ram_ranges(std::span<const uint64_t> sizes) {
  std::vector<std::vector<RamRange>> out;
  uint64_t at = 0;
  for (uint64_t size : sizes) {
    std::vector<RamRange> ranges;
    uint64_t left = size;
    if (at >= kMaxLowRam && at < kRam64Start) at = kRam64Start;
    if (at < kMaxLowRam && left > 0) {
      uint64_t n = std::min(left, kMaxLowRam - at);
      ranges.push_back({at, n});
      left -= n;
      at = left > 0 ? kRam64Start : at + n;
    }
    if (left > 0) {
      ranges.push_back({at, left});
      at += left;
    }
    out.push_back(std::move(ranges));
  }
  return out;
}

// All RAM of one piece of the given size.
inline std::vector<RamRange> ram_ranges(uint64_t size) {
  return zone_ram_ranges(std::span(&size, 1)).front();
}

}  // namespace skiff::x86

// Splits a guest RAM size into the ranges below the 32-bit PCI hole and
// above 4 GiB (layout.h).
#pragma once

#include <algorithm>
#include <vector>

#include "arch/x86/layout.h"
#include "memory/guest_ram.h"

namespace skiff::x86 {

inline std::vector<RamRange> ram_ranges(uint64_t size) {
  std::vector<RamRange> out;
  uint64_t low = std::min(size, kMaxLowRam);
  out.push_back({0, low});
  if (size > low) out.push_back({kRam64Start, size - low});
  return out;
}

}  // namespace skiff::x86

// Where each memory zone lives in guest physical space, and how it is backed
// on the host. Machine maps RAM from it; ACPI SRAT (--numa memory_zones=..)
// describes the same ranges to the guest.
#pragma once

#include <vector>

#include "arch/x86/ram_layout.h"
#include "memory/guest_ram.h"
#include "vmm/config.h"

namespace skiff {

// One RamZone per --memory-zone in the order given (name = the zone id), or
// a single zone named "" holding all RAM with the --memory options when no
// zones are configured. Zones are contiguous in guest physical order
// (x86::zone_ram_ranges); a zone straddling the 32-bit hole has two ranges.
inline std::vector<RamZone> memory_zone_layout(const VmConfig& config) {
  std::vector<RamZone> zones;
  if (config.memory.zones.empty()) {
    zones.push_back({"", x86::ram_ranges(config.memory_size), config.memory.backing});
    return zones;
  }
  std::vector<uint64_t> sizes;
  for (const auto& z : config.memory.zones) sizes.push_back(z.size);
  auto ranges = x86::zone_ram_ranges(sizes);
  for (size_t i = 0; i < sizes.size(); ++i) {
    const auto& z = config.memory.zones[i];
    zones.push_back({z.id, std::move(ranges[i]), z.backing});
  }
  return zones;
}

}  // namespace skiff

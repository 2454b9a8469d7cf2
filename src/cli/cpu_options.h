// --cpus and --numa values in Cloud Hypervisor's syntax:
//   --cpus boot=N[,max=M][,topology=T:C:D:P][,affinity=[V@[H,...],...]]
//   --numa guest_numa_id=N[,cpus=[0-1,4]][,memory_zones=[z0,z1]][,distances=[1@20,...]]
// Lists take single numbers and inclusive ranges ("0-3"). What the values
// mean together, and against the host, is checked by
// vmm/cpu_placement.h's validate_cpu_placement; this file checks syntax,
// ranges and what one option says about itself.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "vmm/config.h"

namespace skiff::cli {

// "[0-2,5]", "0-2,5" or "7": the numbers in order; a number given twice is
// an error. Each is at most `max`.
[[nodiscard]] Result<std::vector<uint32_t>> parse_number_list(std::string_view option,
                                                              std::string_view text, uint32_t max);

// Fills boot_cpus, max_cpus, topology and affinity of `vm` from a --cpus value.
[[nodiscard]] Result<> parse_cpus(std::string_view value, VmConfig& vm);

// One --numa value.
[[nodiscard]] Result<NumaNodeConfig> parse_numa(std::string_view value);

}  // namespace skiff::cli

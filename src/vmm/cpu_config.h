// What the user asked for about vCPUs and guest NUMA (--cpus, --numa, the
// API's CpusConfig/NumaConfig). Plain data; vmm/cpu_placement.h checks it
// against itself and the host, and turns it into the x86 topology, the
// per-vCPU host CPU sets and the ACPI SRAT/SLIT input.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace skiff {

// --cpus topology=threads_per_core:cores_per_die:dies_per_package:packages.
// As in Cloud Hypervisor, the product must equal the maximum vCPU count.
struct CpuTopologyConfig {
  uint32_t threads_per_core = 1;
  uint32_t cores_per_die = 1;
  uint32_t dies_per_package = 1;
  uint32_t packages = 1;

  [[nodiscard]] uint64_t vcpus() const {
    return uint64_t{threads_per_core} * cores_per_die * dies_per_package * packages;
  }
  bool operator==(const CpuTopologyConfig&) const = default;
};

// --cpus affinity=[vcpu@[host CPUs],...]: the host CPUs vCPU `vcpu`'s
// thread may run on.
struct VcpuAffinity {
  uint32_t vcpu = 0;
  std::vector<uint32_t> host_cpus;
  bool operator==(const VcpuAffinity&) const = default;
};

// The distance from a NUMA node to `destination` (ACPI SLIT units: 10 is
// local).
struct NumaDistance {
  uint32_t destination = 0;
  uint32_t distance = 0;
  bool operator==(const NumaDistance&) const = default;
};

// One --numa guest_numa_id=N,cpus=[...],memory_zones=[...],distances=[...].
struct NumaNodeConfig {
  uint32_t guest_numa_id = 0;
  std::vector<uint32_t> cpus;             // vCPU indices
  std::vector<std::string> memory_zones;  // --memory-zone ids
  std::vector<NumaDistance> distances;    // unlisted: 10 to itself, 20 to others
  bool operator==(const NumaNodeConfig&) const = default;
};

// SLIT defaults (ACPI 6.5 §5.2.17: 10 is the local distance).
inline constexpr uint32_t kNumaLocalDistance = 10;
inline constexpr uint32_t kNumaRemoteDistance = 20;

}  // namespace skiff

// vCPU placement and the guest NUMA description: checks --cpus (max,
// topology, affinity) and --numa against each other and against the host
// once, before anything runs (the CLI and the API both come through
// validate_cpu_placement), and turns them into what the layers below want:
// the x86 topology for CPUID and the MADT, each vCPU thread's host CPU set,
// and the SRAT/SLIT nodes.
#pragma once

#include <pthread.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "arch/x86/acpi.h"
#include "arch/x86/cpuid.h"
#include "base/result.h"
#include "memory/guest_ram.h"
#include "vmm/config.h"

namespace skiff {

// The host CPUs skiff itself may run on (sched_getaffinity(2) of the
// process, which is within /sys/devices/system/cpu/online and honours
// cgroup cpusets and taskset): a vCPU may only be pinned inside this set.
[[nodiscard]] Result<std::vector<uint32_t>> host_usable_cpus();

// Checks boot <= max, the topology (its product equals max, as Cloud
// Hypervisor requires; APIC IDs fit the xAPIC's 8 bits), each affinity
// entry (vCPU below max, listed once, host CPUs in `host_cpus`) and the NUMA
// nodes (ids 0..N-1 each once, vCPUs below max and in one node only,
// distances to existing nodes in 11..255, memory zones as acpi_numa_nodes
// requires). Errors name the bad value.
[[nodiscard]] Result<> validate_cpu_placement(const VmConfig& config,
                                              const std::vector<uint32_t>& host_cpus);
// Same, against host_usable_cpus().
[[nodiscard]] Result<> validate_cpu_placement(const VmConfig& config);

// The CPUID/MADT topology: the configured one, or one socket of
// effective_max_cpus() single-threaded cores.
[[nodiscard]] x86::CpuTopology vcpu_topology(const VmConfig& config);

// The host CPUs vCPU `index` is pinned to; empty when it is not pinned.
[[nodiscard]] std::vector<uint32_t> vcpu_host_cpus(const VmConfig& config, uint32_t index);

// Restricts `thread` to `cpus` (pthread_setaffinity_np). The vCPU runner
// calls it on its own thread before the first KVM_RUN, so the guest never
// runs elsewhere.
[[nodiscard]] Result<> pin_thread(pthread_t thread, const std::vector<uint32_t>& cpus);
// The CPUs `thread` may run on, ascending.
[[nodiscard]] Result<std::vector<uint32_t>> thread_cpus(pthread_t thread);

// SRAT/SLIT input for a validated config, ordered by guest_numa_id: each
// node's vCPUs, the ranges of its memory zones (`zones`: the Machine's
// memory_zone_layout, vmm/memory_layout.h), and its distance row. When no
// node names a memory zone, every zone (all of RAM) belongs to node 0 so the
// guest still sees all its memory on a node. Fails when a node names a
// zone that does not exist, a zone belongs to two nodes, or zones are
// configured and one belongs to no node (the guest would find RAM outside
// every node and give up on NUMA).
[[nodiscard]] Result<std::vector<x86::AcpiNumaNode>> acpi_numa_nodes(
    const VmConfig& config, std::span<const RamZone> zones);

}  // namespace skiff

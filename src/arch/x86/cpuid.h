// The CPUID table a vCPU is given with KVM_SET_CPUID2, derived from what
// KVM_GET_SUPPORTED_CPUID reports. Pure: no ioctls, so it is tested with
// synthetic tables. The vmm layer calls it once per vCPU.
//
// What it changes (each decision is commented in cpuid.cc with its SDM/APM
// reference): the per-vCPU APIC IDs and topology leaves (0x1, 0x4, 0xB,
// 0x1F), the hypervisor bit and KVM's paravirtual leaves (0x4000_000x),
// features skiff does not offer (MONITOR/MWAIT, PMU unless enabled, power
// management leaf 0x6) and TSC-deadline per KVM_CAP_TSC_DEADLINE_TIMER.
// Everything else passes through unchanged, including leaf 0x8000_0008.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "base/result.h"

namespace skiff::x86 {

// How vCPUs are arranged; vCPU i is thread (i % threads_per_core) of core
// ((i / threads_per_core) % cores_per_die) and so on up to the socket.
struct CpuTopology {
  uint32_t threads_per_core = 1;
  uint32_t cores_per_die = 1;
  uint32_t dies_per_socket = 1;
  uint32_t sockets = 1;

  // The default: every vCPU is a single-threaded core of one socket.
  [[nodiscard]] static CpuTopology flat(uint32_t vcpu_count) { return {1, vcpu_count, 1, 1}; }

  [[nodiscard]] uint64_t logical_per_socket() const {
    return uint64_t{threads_per_core} * cores_per_die * dies_per_socket;
  }
  [[nodiscard]] uint64_t capacity() const { return logical_per_socket() * sockets; }
};

// Checks that every count is at least 1, that the topology has room for
// `vcpu_count` vCPUs and that their APIC IDs fit in 8 bits (skiff's MADT and
// leaf 0x1 use xAPIC IDs; 0xff is the broadcast ID).
[[nodiscard]] Result<> validate_topology(const CpuTopology& topo, uint32_t vcpu_count);

// The (x2)APIC ID of vCPU `index`: the thread, core, die and socket numbers
// packed into fields just wide enough for their counts (SDM Vol. 3A,
// "Hierarchical Mapping of Shared Resources"). With the flat default the
// APIC ID is the vCPU index. The MADT and CPUID both use this function.
[[nodiscard]] uint32_t apic_id(const CpuTopology& topo, uint32_t index);

struct CpuidOptions {
  // KVM_CHECK_EXTENSION(KVM_CAP_TSC_DEADLINE_TIMER): KVM emulates the
  // TSC-deadline timer but does not report it in KVM_GET_SUPPORTED_CPUID.
  bool tsc_deadline_timer = false;
  // Advertise the architectural PMU (leaf 0xA). Off by default: a vPMU
  // needs the vmm to configure it and costs exits.
  bool enable_pmu = false;
};

// Builds vCPU `vcpu_index`'s table from KVM's supported entries. Fails if the
// topology is invalid or the index is out of range.
[[nodiscard]] Result<std::vector<kvm_cpuid_entry2>> build_cpuid(
    const std::vector<kvm_cpuid_entry2>& supported, uint32_t vcpu_index, uint32_t vcpu_count,
    const CpuTopology& topo, const CpuidOptions& options = {});

}  // namespace skiff::x86

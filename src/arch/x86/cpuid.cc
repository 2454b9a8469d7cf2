#include "arch/x86/cpuid.h"

#include <algorithm>
#include <bit>

namespace skiff::x86 {
namespace {

// Leaves this file edits (SDM Vol. 2A, CPUID instruction, Table 3-8).
constexpr uint32_t kLeafBasicMax = 0x0;
constexpr uint32_t kLeafFeatures = 0x1;
constexpr uint32_t kLeafCacheParams = 0x4;
constexpr uint32_t kLeafMonitor = 0x5;
constexpr uint32_t kLeafPower = 0x6;
constexpr uint32_t kLeafArchPmu = 0xa;
constexpr uint32_t kLeafTopology = 0xb;
constexpr uint32_t kLeafTopologyV2 = 0x1f;
constexpr uint32_t kLeafHypervisor = 0x40000000;
constexpr uint32_t kLeafKvmFeatures = 0x40000001;
constexpr uint32_t kLeafExtFeatures = 0x80000001;
constexpr uint32_t kLeafAmdPerfMonV2 = 0x80000022;

// Leaf 0x1 bits (SDM Vol. 2A Table 3-10 (ECX), Table 3-11 (EDX)).
constexpr uint32_t kEcxMonitor = 1u << 3;
constexpr uint32_t kEcxPdcm = 1u << 15;
constexpr uint32_t kEcxTscDeadline = 1u << 24;
constexpr uint32_t kEcxHypervisor = 1u << 31;
constexpr uint32_t kEdxHtt = 1u << 28;

// Leaf 0x6 EAX bit 2: APIC timer always running (ARAT).
constexpr uint32_t kPowerEaxArat = 1u << 2;

// AMD APM Vol. 3, CPUID Fn8000_0001 ECX bit 23: PerfCtrExtCore.
constexpr uint32_t kExtEcxPerfCtrExtCore = 1u << 23;

// Leaf 0xB / 0x1F level types (SDM Vol. 2A, CPUID leaf 1FH, ECX[15:8]).
constexpr uint32_t kLevelInvalid = 0;
constexpr uint32_t kLevelSmt = 1;
constexpr uint32_t kLevelCore = 2;
constexpr uint32_t kLevelDie = 5;

// Bits needed to number `count` things (0 for one thing).
uint32_t width(uint32_t count) {
  return count <= 1 ? 0 : std::bit_width(count - 1);
}

struct Widths {
  uint32_t smt, core, die;
};

Widths widths(const CpuTopology& t) {
  return {width(t.threads_per_core), width(t.cores_per_die), width(t.dies_per_socket)};
}

uint32_t set_bits(uint32_t reg, uint32_t lo, uint32_t len, uint32_t value) {
  uint32_t mask = ((len == 32 ? 0 : (1u << len)) - 1u) << lo;
  return (reg & ~mask) | ((value << lo) & mask);
}

uint32_t capped(uint64_t value, uint32_t max) {
  return static_cast<uint32_t>(std::min<uint64_t>(value, max));
}

kvm_cpuid_entry2 level_entry(uint32_t leaf, uint32_t subleaf, uint32_t type, uint32_t shift,
                             uint32_t count, uint32_t x2apic_id) {
  kvm_cpuid_entry2 e{};
  e.function = leaf;
  e.index = subleaf;
  e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  e.eax = shift;                  // bits 4:0: shift right x2APIC ID for the next level
  e.ebx = count & 0xffff;         // bits 15:0: logical processors at this level
  e.ecx = subleaf | (type << 8);  // bits 7:0: the input ECX; bits 15:8: level type
  e.edx = x2apic_id;              // x2APIC ID of this logical processor, at every level
  return e;
}

// Leaf 0xB (SDM Vol. 2A, "Extended Topology Enumeration Leaf") and its v2
// 0x1F: one sub-leaf per level, bottom up, ending with an invalid level.
// 0xB stops at the core level, which then spans the whole package; 0x1F
// adds a die level when there is more than one die.
void append_topology_leaf(std::vector<kvm_cpuid_entry2>& out, uint32_t leaf, const CpuTopology& t,
                          uint32_t x2apic_id) {
  Widths w = widths(t);
  bool with_die = leaf == kLeafTopologyV2 && t.dies_per_socket > 1;
  uint32_t sub = 0;
  out.push_back(level_entry(leaf, sub++, kLevelSmt, w.smt, t.threads_per_core, x2apic_id));
  if (with_die) {
    out.push_back(level_entry(leaf, sub++, kLevelCore, w.smt + w.core,
                              t.threads_per_core * t.cores_per_die, x2apic_id));
    out.push_back(level_entry(leaf, sub++, kLevelDie, w.smt + w.core + w.die,
                              capped(t.logical_per_socket(), 0xffff), x2apic_id));
  } else {
    out.push_back(level_entry(leaf, sub++, kLevelCore, w.smt + w.core + w.die,
                              capped(t.logical_per_socket(), 0xffff), x2apic_id));
  }
  out.push_back(level_entry(leaf, sub, kLevelInvalid, 0, 0, x2apic_id));
}

void edit_features(kvm_cpuid_entry2& e, const CpuTopology& t, uint32_t id,
                   const CpuidOptions& opt) {
  uint64_t logical = t.logical_per_socket();
  // EBX[31:24]: initial APIC ID; EBX[23:16]: addressable logical processor
  // IDs per package -- the count, which software rounds up to a power of two
  // (SDM Vol. 2A Table 3-8, leaf 01H EBX).
  e.ebx = set_bits(e.ebx, 24, 8, id);
  e.ebx = set_bits(e.ebx, 16, 8, capped(logical, 0xff));
  // EDX.HTT[28]: EBX[23:16] is valid, i.e. more than one logical processor
  // per package (SDM Vol. 2A Table 3-11).
  e.edx = logical > 1 ? (e.edx | kEdxHtt) : (e.edx & ~kEdxHtt);
  // ECX[31] is reserved for hypervisors to say they are there (SDM Vol. 2A
  // Table 3-10 notes bit 31 as "not used"; Linux and every VMM treat it as
  // X86_FEATURE_HYPERVISOR).
  e.ecx |= kEcxHypervisor;
  // MONITOR/MWAIT: skiff does not let the guest idle in MWAIT (KVM would
  // have to disable MWAIT exiting), so HLT is the idle instruction.
  e.ecx &= ~kEcxMonitor;
  // TSC-deadline mode of the local APIC timer (SDM Vol. 3A, "TSC-Deadline Mode"): KVM
  // emulates it but reports it only through KVM_CAP_TSC_DEADLINE_TIMER.
  e.ecx = opt.tsc_deadline_timer ? (e.ecx | kEcxTscDeadline) : (e.ecx & ~kEcxTscDeadline);
  // PDCM says IA32_PERF_CAPABILITIES exists, which is part of the PMU.
  if (!opt.enable_pmu) e.ecx &= ~kEcxPdcm;
}

void edit_cache_params(kvm_cpuid_entry2& e, const CpuTopology& t) {
  // Leaf 04H (SDM Vol. 2A Table 3-8): EAX[4:0] = 0 means "no more caches".
  if ((e.eax & 0x1f) == 0) return;
  uint32_t level = (e.eax >> 5) & 0x7;
  // EAX[25:14]: logical processors sharing this cache, minus one. L1 and
  // L2 belong to one core (shared by its SMT threads), L3 to the package.
  uint64_t sharing = level <= 2 ? t.threads_per_core : t.logical_per_socket();
  e.eax = set_bits(e.eax, 14, 12, capped(sharing, 4096) - 1);
  // EAX[31:26]: addressable core IDs in the package, minus one; must agree
  // with the core fields of the APIC ID.
  uint64_t cores = uint64_t{t.cores_per_die} * t.dies_per_socket;
  e.eax = set_bits(e.eax, 26, 6, capped(cores, 64) - 1);
}

// "KVMKVMKVM\0\0\0" in EBX, ECX, EDX; EAX is the highest hypervisor leaf
// (Documentation/virt/kvm/x86/cpuid.rst). skiff offers KVM's features leaf
// and nothing above it.
void set_kvm_signature(kvm_cpuid_entry2& e) {
  e.eax = kLeafKvmFeatures;
  e.ebx = 0x4b4d564b;  // "KVMK"
  e.ecx = 0x564b4d56;  // "VMKV"
  e.edx = 0x0000004d;  // "M\0\0\0"
}

void zero_registers(kvm_cpuid_entry2& e) {
  e.eax = e.ebx = e.ecx = e.edx = 0;
}

}  // namespace

Result<> validate_topology(const CpuTopology& t, uint32_t vcpu_count) {
  if (t.threads_per_core == 0 || t.cores_per_die == 0 || t.dies_per_socket == 0 || t.sockets == 0)
    return fail("CPU topology {}t/{}c/{}d/{}s: every count must be at least 1", t.threads_per_core,
                t.cores_per_die, t.dies_per_socket, t.sockets);
  if (vcpu_count == 0) return fail("CPU topology: need at least one vCPU");
  // Field widths: a huge count must not shift past 32 bits, and every ID
  // must fit an xAPIC ID (8 bits, 0xff reserved for broadcast).
  // Checked first, so the products below cannot overflow.
  Widths w = widths(t);
  if (w.smt + w.core + w.die + width(t.sockets) > 8)
    return fail("CPU topology {}t/{}c/{}d/{}s: APIC IDs do not fit 8 bits", t.threads_per_core,
                t.cores_per_die, t.dies_per_socket, t.sockets);
  if (t.capacity() < vcpu_count)
    return fail("CPU topology {}t/{}c/{}d/{}s holds {} vCPUs, not {}", t.threads_per_core,
                t.cores_per_die, t.dies_per_socket, t.sockets, t.capacity(), vcpu_count);
  if (apic_id(t, vcpu_count - 1) >= 0xff)
    return fail("CPU topology: vCPU {} would get the broadcast APIC ID 0xff", vcpu_count - 1);
  return {};
}

uint32_t apic_id(const CpuTopology& t, uint32_t index) {
  Widths w = widths(t);
  uint32_t thread = index % t.threads_per_core;
  uint32_t core = (index / t.threads_per_core) % t.cores_per_die;
  uint32_t die = (index / (t.threads_per_core * t.cores_per_die)) % t.dies_per_socket;
  uint32_t socket = index / (t.threads_per_core * t.cores_per_die * t.dies_per_socket);
  return thread | core << w.smt | die << (w.smt + w.core) | socket << (w.smt + w.core + w.die);
}

Result<std::vector<kvm_cpuid_entry2>> build_cpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                                  uint32_t vcpu_index, uint32_t vcpu_count,
                                                  const CpuTopology& topo,
                                                  const CpuidOptions& opt) {
  SKIFF_TRY_VOID(validate_topology(topo, vcpu_count));
  if (vcpu_index >= vcpu_count)
    return fail("CPUID for vCPU {}: only {} vCPUs", vcpu_index, vcpu_count);
  uint32_t id = apic_id(topo, vcpu_index);

  uint32_t max_basic = 0;
  bool has_signature = false;
  bool has_kvm_features = false;
  for (const auto& e : supported) {
    if (e.function == kLeafBasicMax) max_basic = e.eax;
    if (e.function == kLeafHypervisor) has_signature = true;
    if (e.function == kLeafKvmFeatures) has_kvm_features = true;
  }

  std::vector<kvm_cpuid_entry2> out;
  out.reserve(supported.size() + 8);
  for (kvm_cpuid_entry2 e : supported) {
    switch (e.function) {
      case kLeafFeatures:
        edit_features(e, topo, id, opt);
        break;
      case kLeafCacheParams:
        edit_cache_params(e, topo);
        break;
      case kLeafMonitor:
        // Leaf 05H describes MONITOR/MWAIT, which leaf 01H no longer offers.
        zero_registers(e);
        break;
      case kLeafPower:
        // Leaf 06H: the guest cannot read thermal sensors, APERF/MPERF or
        // use HWP (SDM Vol. 3B, "Power and Thermal Management"); keep only ARAT, which KVM's
        // emulated APIC timer honours through C-states.
        e.eax &= kPowerEaxArat;
        e.ebx = e.ecx = e.edx = 0;
        break;
      case kLeafArchPmu:
        // Leaf 0AH EAX[7:0] = 0: no architectural PMU (SDM Vol. 3B, "Architectural Performance
        // Monitoring").
        if (!opt.enable_pmu) zero_registers(e);
        break;
      case kLeafTopology:
      case kLeafTopologyV2:
        continue;  // rebuilt below for this vCPU's position
      case kLeafHypervisor:
        // Enforce the signature and the max leaf, whatever KVM returned.
        set_kvm_signature(e);
        break;
      case kLeafKvmFeatures:
        // Passed through: these are the paravirtual features KVM itself
        // implements (kvmclock, PV EOI, PV unhalt, ...).
        break;
      case kLeafExtFeatures:
        // AMD's core performance counters extension is part of the PMU.
        if (!opt.enable_pmu) e.ecx &= ~kExtEcxPerfCtrExtCore;
        break;
      case kLeafAmdPerfMonV2:
        // AMD APM Vol. 3, Fn8000_0022: PerfMonV2 and counter counts.
        if (!opt.enable_pmu) zero_registers(e);
        break;
      default:
        break;  // 0x8000_0008 (address sizes) and the rest: as KVM reports
    }
    out.push_back(e);
  }

  if (max_basic >= kLeafTopology) append_topology_leaf(out, kLeafTopology, topo, id);
  if (max_basic >= kLeafTopologyV2) append_topology_leaf(out, kLeafTopologyV2, topo, id);
  // KVM always reports both hypervisor leaves; should a table lack them,
  // still say "KVM" (the guest's paravirtual clock and EOI code look for
  // it) and offer no paravirtual features rather than hide the leaf.
  if (!has_signature) {
    kvm_cpuid_entry2 sig{};
    sig.function = kLeafHypervisor;
    set_kvm_signature(sig);
    out.push_back(sig);
  }
  if (!has_kvm_features) {
    kvm_cpuid_entry2 features{};
    features.function = kLeafKvmFeatures;
    out.push_back(features);
  }
  return out;
}

}  // namespace skiff::x86

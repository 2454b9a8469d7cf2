// The MSR values every vCPU gets before its first KVM_RUN (KVM_SET_MSRS).
// KVM resets most MSRs to their power-on values already; these are the ones
// where power-on is the wrong state for a guest entered directly in 64-bit
// or 32-bit protected mode without firmware, or where all vCPUs must agree
// (the TSC). Pure: the vmm layer passes KVM's MSR index list in.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <span>
#include <vector>

namespace skiff::x86 {

// MSR indices (SDM Vol. 4, Table 2-2 "IA-32 Architectural MSRs").
namespace msr {
inline constexpr uint32_t kIa32Tsc = 0x10;
inline constexpr uint32_t kIa32SysenterCs = 0x174;
inline constexpr uint32_t kIa32SysenterEsp = 0x175;
inline constexpr uint32_t kIa32SysenterEip = 0x176;
inline constexpr uint32_t kIa32MiscEnable = 0x1a0;
inline constexpr uint32_t kIa32MtrrDefType = 0x2ff;
inline constexpr uint32_t kStar = 0xc0000081;
inline constexpr uint32_t kLstar = 0xc0000082;
inline constexpr uint32_t kCstar = 0xc0000083;
inline constexpr uint32_t kSyscallMask = 0xc0000084;
inline constexpr uint32_t kKernelGsBase = 0xc0000102;

// IA32_MISC_ENABLE bit 0: fast-strings enable.
inline constexpr uint64_t kMiscEnableFastStrings = 1u << 0;
// IA32_MTRR_DEF_TYPE (SDM Vol. 3A, "IA32_MTRR_DEF_TYPE MSR"): bit 11 E (MTRRs enabled),
// bits 7:0 the default type; 6 = write-back.
inline constexpr uint64_t kMtrrDefTypeEnable = 1u << 11;
inline constexpr uint64_t kMtrrTypeWriteBack = 6;
}  // namespace msr

struct MsrSupport {
  // KVM_GET_MSR_INDEX_LIST: the MSRs KVM saves and emulates.
  std::span<const uint32_t> kvm_index_list;
  // CPUID.01H:EDX.MTRR[12] in the vCPU's CPUID. KVM always emulates the
  // MTRRs for such a vCPU but does not list them in KVM_GET_MSR_INDEX_LIST.
  bool guest_has_mtrr = false;
};

// The boot MSRs that this KVM supports, in a fixed order.
[[nodiscard]] std::vector<kvm_msr_entry> boot_msrs(const MsrSupport& support);

}  // namespace skiff::x86

#include "arch/x86/msr.h"

#include <algorithm>
#include <array>

namespace skiff::x86 {
namespace {

struct BootMsr {
  uint32_t index;
  uint64_t value;
};

// What Firecracker (arch/src/x86_64/msr.rs, create_boot_msr_entries) and
// Cloud Hypervisor (arch/src/x86_64/regs.rs, setup_msrs) set, and why:
constexpr std::array kBootMsrs{
    // SYSENTER/SYSCALL entry points: zero, so nothing left over from a
    // previous run (reboot reuses the vCPU) is live until the guest kernel
    // writes its own entry points.
    BootMsr{msr::kIa32SysenterCs, 0},
    BootMsr{msr::kIa32SysenterEsp, 0},
    BootMsr{msr::kIa32SysenterEip, 0},
    BootMsr{msr::kStar, 0},
    BootMsr{msr::kLstar, 0},
    BootMsr{msr::kCstar, 0},
    BootMsr{msr::kSyscallMask, 0},
    BootMsr{msr::kKernelGsBase, 0},
    // The TSC starts at 0 on every vCPU: KVM matches writes made close
    // together and keeps the vCPUs' TSCs synchronised, which Linux needs to
    // trust the TSC as clocksource.
    BootMsr{msr::kIa32Tsc, 0},
    // Fast strings (REP MOVS/STOS in cache-line units), which firmware sets
    // on real machines; Linux expects it set and warns otherwise.
    BootMsr{msr::kIa32MiscEnable, msr::kMiscEnableFastStrings},
    // MTRRs enabled with write-back as the default type. At power-on the
    // MTRRs are disabled, which makes all memory uncacheable (SDM Vol. 3A
    // "MTRR Considerations in Setting Up Memory"); firmware normally fixes that, and without
    // firmware the
    // guest would run uncached (and Linux would turn PAT off).
    BootMsr{msr::kIa32MtrrDefType, msr::kMtrrDefTypeEnable | msr::kMtrrTypeWriteBack},
};

bool supported(const MsrSupport& s, uint32_t index) {
  if (index == msr::kIa32MtrrDefType) return s.guest_has_mtrr;
  return std::find(s.kvm_index_list.begin(), s.kvm_index_list.end(), index) !=
         s.kvm_index_list.end();
}

}  // namespace

std::vector<kvm_msr_entry> boot_msrs(const MsrSupport& support) {
  std::vector<kvm_msr_entry> out;
  for (const auto& m : kBootMsrs) {
    if (!supported(support, m.index)) continue;
    kvm_msr_entry e{};
    e.index = m.index;
    e.data = m.value;
    out.push_back(e);
  }
  return out;
}

}  // namespace skiff::x86

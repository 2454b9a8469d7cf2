// The BSP's initial register state for a loaded kernel: turns an EntryState
// into kvm_regs/kvm_sregs and writes what those registers point at — the
// boot GDT at kGdtAddr, and for long mode an empty IDT at kIdtAddr and
// identity page tables at kPml4Addr mapping the first 4 GiB with 2 MiB
// pages. APs are left to KVM: they wait for INIT/SIPI from the guest.
//
// Only the struct definitions of <linux/kvm.h> are used; the vmm layer does
// the KVM_SET_REGS / KVM_SET_SREGS ioctls.
#pragma once

#include <linux/kvm.h>

#include <cstdint>

#include "arch/x86/boot_image.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace skiff::x86 {

// Boot GDT selectors. boot.rst (32- and 64-bit boot protocols) requires
// __BOOT_CS = 0x10 and __BOOT_DS = 0x18; slot 1 holds the TSS descriptor
// that TR refers to (pvh.pandoc asks for a 32-bit TSS, base 0, limit 0x67).
inline constexpr uint16_t kBootTssSelector = 0x08;
inline constexpr uint16_t kBootCodeSelector = 0x10;
inline constexpr uint16_t kBootDataSelector = 0x18;
inline constexpr uint64_t kBootGdtEntries = 4;

// CR0/CR4/EFER bits (Intel SDM Vol. 3A §2.5, §2.2.1).
inline constexpr uint64_t kCr0Pe = 1u << 0;
inline constexpr uint64_t kCr0Et = 1u << 4;
inline constexpr uint64_t kCr0Ne = 1u << 5;
inline constexpr uint64_t kCr0Pg = 1u << 31;
inline constexpr uint64_t kCr4Pae = 1u << 5;
inline constexpr uint64_t kEferLme = 1u << 8;
inline constexpr uint64_t kEferLma = 1u << 10;

// Writes the boot GDT (and for kLong64 the IDT and page tables) to mem and
// fills regs entirely and the segment, descriptor-table and control
// registers of sregs. Other sregs fields (apic_base, interrupt_bitmap, cr8)
// are kept, so pass what KVM_GET_SREGS returned.
[[nodiscard]] Result<> setup_boot_cpu(const GuestMemory& mem, const EntryState& entry,
                                      kvm_regs* regs, kvm_sregs* sregs);

// Encodes a segment as a GDT descriptor (SDM Vol. 3A §3.4.5).
[[nodiscard]] uint64_t gdt_entry(const kvm_segment& s);

}  // namespace skiff::x86

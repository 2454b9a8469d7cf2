// The guest-physical memory map of skiff's x86-64 machine. One place, so the
// loaders, e820, ACPI and the device wiring agree.
//
//   0x0000_0000  RAM (low)           real-mode IVT, BDA, then skiff's boot data
//   0x0009_fc00  reserved            EBDA (kept empty) .. 0x000a_0000
//   0x000a_0000  reserved            VGA hole + BIOS area; ACPI RSDP at 0xe0000
//   0x0010_0000  RAM                 kernel at 1 MiB, initrd at the top
//   0xc000_0000  PCI hole (1 GiB)    32-bit MMIO BARs, ECAM, IOAPIC, LAPIC
//   0x1_0000_0000 RAM (high)         whatever did not fit below 3 GiB
#pragma once

#include <cstdint>

namespace skiff::x86 {

inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kMiB = 1024 * kKiB;
inline constexpr uint64_t kGiB = 1024 * kMiB;

// Low-memory boot data (all below the EBDA, inside RAM region 0).
inline constexpr uint64_t kGdtAddr = 0x500;            // boot GDT (4 entries)
inline constexpr uint64_t kIdtAddr = 0x520;            // empty IDT for the 64-bit entry
inline constexpr uint64_t kPvhStartInfoAddr = 0x6000;  // hvm_start_info (+ memmap, modules)
inline constexpr uint64_t kPvhStartInfoSize = 0x1000;
inline constexpr uint64_t kMultibootInfoAddr = 0x6000;  // multiboot_info (+ mmap, modules)
inline constexpr uint64_t kZeroPageAddr = 0x7000;       // Linux boot_params
inline constexpr uint64_t kBootStackTop = 0x8ff0;       // initial RSP for 64-bit entry
inline constexpr uint64_t kPml4Addr = 0x9000;           // identity page tables for 64-bit entry
inline constexpr uint64_t kPdptAddr = 0xa000;
inline constexpr uint64_t kPdAddr = 0xb000;  // 4 PDs: 0xb000..0xefff map 4 GiB
inline constexpr uint64_t kCmdlineAddr = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x10000;  // bytes including the NUL
inline constexpr uint64_t kEbdaStart = 0x9fc00;
inline constexpr uint64_t kBiosAreaStart = 0xa0000;
inline constexpr uint64_t kRsdpAddr = 0xe0000;        // legacy RSDP search area
inline constexpr uint64_t kAcpiTablesAddr = 0xe0100;  // XSDT, FADT, DSDT, MADT, MCFG follow
inline constexpr uint64_t kAcpiTablesEnd = 0x100000;
inline constexpr uint64_t kHighMemStart = 0x100000;  // 1 MiB: kernels load here

// The 32-bit hole below 4 GiB.
inline constexpr uint64_t kPciHoleStart = 0xc0000000;    // 3 GiB
inline constexpr uint64_t kPciMmio32Start = 0xc0000000;  // 32-bit BARs
inline constexpr uint64_t kPciMmio32End = 0xe0000000;
inline constexpr uint64_t kPciEcamBase = 0xe0000000;  // ECAM, bus 0 only
inline constexpr uint64_t kPciEcamSize = 1 * kMiB;    // 32 devices x 8 functions x 4 KiB
inline constexpr uint64_t kIoapicAddr = 0xfec00000;
inline constexpr uint64_t kLapicAddr = 0xfee00000;
inline constexpr uint64_t kRam64Start = 0x100000000;  // 4 GiB
inline constexpr uint64_t kMaxLowRam = kPciHoleStart;

// KVM needs three pages for the VMX TSS and one for the identity map just
// below the BIOS ROM at the top of the hole (not RAM, not MMIO).
inline constexpr uint64_t kIdentityMapAddr = 0xfeffc000;
inline constexpr uint64_t kTssAddr = 0xfeffd000;

// Legacy I/O ports.
inline constexpr uint16_t kPortCom1 = 0x3f8;
inline constexpr uint8_t kIrqCom1 = 4;
inline constexpr uint16_t kPortI8042Data = 0x60;
inline constexpr uint16_t kPortI8042Cmd = 0x64;
inline constexpr uint16_t kPortCmosIndex = 0x70;
inline constexpr uint16_t kPortPost = 0x80;       // boot-time marker (Cloud Hypervisor)
inline constexpr uint16_t kPortDebugExit = 0xf4;  // QEMU isa-debug-exit
inline constexpr uint16_t kPortPciConfigAddr = 0xcf8;
inline constexpr uint16_t kPortPciConfigData = 0xcfc;
// INTx of PCI devices: arch/x86/pci_irq.h (GSIs 16-19, the DSDT's _PRT).

// HW-reduced ACPI (ACPI 6.x §4.1): sleep control/status and reset registers
// in one small I/O block that the FADT points at.
inline constexpr uint16_t kPortAcpiSleepControl = 0x600;  // write SLP_EN | SLP_TYPx << 2
inline constexpr uint16_t kPortAcpiSleepStatus = 0x601;
inline constexpr uint16_t kPortAcpiReset = 0x602;  // write kAcpiResetValue
inline constexpr uint8_t kAcpiResetValue = 0x1;
inline constexpr uint8_t kAcpiS5SleepType = 5;  // \_S5 package value

// ACPI Generic Event Device (power button): its one-byte event register and
// its interrupt, an IOAPIC-only GSI (above the 16 ISA IRQs the PIC also sees),
// level-triggered active high as its _CRS says.
inline constexpr uint16_t kPortGed = 0x608;
inline constexpr uint32_t kGsiGed = 20;

}  // namespace skiff::x86

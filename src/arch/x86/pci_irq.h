// How skiff's x86 machine wires PCI INTx: one function, used both by the
// DSDT's _PRT (what the guest is told) and by the vmm's PCI devices (which
// GSI a function's INTx# actually asserts), so the two cannot disagree.
//
// The four INTx# pins of every slot go to IOAPIC pins 16-19 with the
// PCI-to-PCI bridge swizzle (PCI-to-PCI Bridge Architecture spec 1.2 §9.1):
// slot S, pin P (0 = INTA#) -> GSI 16 + (S + P) mod 4, as QEMU's microvm
// (GPEX) routes them. GSIs above 15 are IOAPIC-only (the PIC does not see
// them) and no MADT Interrupt Source Override applies to them, so they are
// level triggered, active low: PCI's INTx# convention (PCI Local Bus 3.0
// §2.2.6), which an OS assumes for a _PRT entry that names a GSI directly
// (ACPI 6.5 §6.2.13; Linux drivers/acpi/pci_irq.c). KVM's in-kernel IOAPIC
// does not model polarity: the VMM asserts a line with level 1 whatever
// the guest programs. GSI 20 is the GED's (layout.h kGsiGed), 24+ are MSI
// routes.
#pragma once

#include <cstdint>

#include "arch/x86/layout.h"

namespace skiff::x86 {

inline constexpr uint32_t kPciIntxFirstGsi = 16;
inline constexpr uint32_t kPciIntxGsiCount = 4;
inline constexpr uint8_t kPciSlots = 32;    // devices on bus 0
inline constexpr uint8_t kPciIntxPins = 4;  // INTA# .. INTD#

static_assert(kGsiGed < kPciIntxFirstGsi || kGsiGed >= kPciIntxFirstGsi + kPciIntxGsiCount,
              "the GED's GSI must not be shared with PCI INTx");
static_assert(kPciIntxFirstGsi + kPciIntxGsiCount <= 24, "the IOAPIC has 24 pins");

// The GSI that INTx# pin `pin` (0 = INTA# .. 3 = INTD#) of device `slot`
// on bus 0 asserts.
constexpr uint32_t pci_intx_gsi(uint8_t slot, uint8_t pin) {
  return kPciIntxFirstGsi + (uint32_t{slot} + pin) % kPciIntxGsiCount;
}

}  // namespace skiff::x86

// The AML of skiff's ACPI Generic Event Device (ACPI 6.5 §5.6.9), placed in
// \_SB through AcpiConfig::extra_devices. The register model is
// devices/ged.h; this is what the guest's ACPI interpreter runs:
//
//   Device (GED0) {
//     Name (_HID, "ACPI0013")
//     Name (_UID, Zero)
//     Name (_CRS, ResourceTemplate () {
//       Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive) { gsi } })
//     OperationRegion (GDST, SystemIO, port, One)
//     Field (GDST, ByteAcc, NoLock, Preserve) { GDAT, 8 }
//     Method (_EVT, 1, Serialized) {      // §5.6.9.3: Arg0 = the GSI
//       Local0 = GDAT                     // read-to-clear event bits
//       If (Local0 & power_button_bit) { Notify (\_SB.PWRB, 0x80) }
//     }
//   }
//
// Notify 0x80 on a PNP0C0C device is "power button pressed" (§4.8.3.1.1.2);
// \_SB.PWRB is the control-method power button of dsdt.cc.
#pragma once

#include <cstdint>

#include "arch/x86/aml.h"

namespace skiff::x86 {

struct GedAmlConfig {
  uint32_t gsi = 0;              // interrupt the GED raises (Extended Interrupt descriptor)
  uint16_t port = 0;             // I/O port of the one-byte event register
  uint8_t power_button_bit = 1;  // bit in the register for a power-button press
};

[[nodiscard]] aml::Term ged_device(const GedAmlConfig& config);

}  // namespace skiff::x86

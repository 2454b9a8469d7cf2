// AcpiPm: the HW-reduced ACPI power-management registers that skiff's FADT
// points at: sleep control, sleep status and reset, one byte each at
// consecutive ports (0x600, 0x601, 0x602 in arch/x86/layout.h).
//
// Spec: ACPI 6.5 §4.8.3.7 (Sleep Control Register: SLP_TYPx bits 2-4, SLP_EN
// bit 5), §4.8.3.8 (Sleep Status Register: WAK_STS bit 7, write 1 to
// clear), §4.8.3.6 (Reset Register: write RESET_VALUE from the FADT), and
// §7.4.2 (\_Sx objects: the guest writes the \_S5 package value as SLP_TYP).
//
// Emulated: SLP_EN with SLP_TYP == the configured S5 type -> request_poweroff();
// the reset value -> request_reset(). Other sleep types (S1-S4) are logged
// once and ignored: the guest carries on as if it woke up at once.
// Sleep status reads 0: the machine never sleeps, so WAK_STS is never set;
// writing 1 to it clears nothing there is to clear.
// The block is kSize = 4 ports (0x600..0x603); offset 3 reads 0, writes are
// ignored. Only the low byte of a wider access is a register (the FADT
// declares 8-bit registers).
#pragma once

#include <cstdint>
#include <mutex>
#include <span>

#include "devices/bus.h"
#include "devices/interrupt.h"

namespace skiff {

struct AcpiPmConfig {
  uint8_t s5_sleep_type = 5;  // must match the DSDT's \_S5 package
  uint8_t reset_value = 1;    // must match the FADT's RESET_VALUE
};

class AcpiPm : public BusDevice {
 public:
  static constexpr uint64_t kSize = 4;
  static constexpr uint64_t kSleepControlOffset = 0;
  static constexpr uint64_t kSleepStatusOffset = 1;
  static constexpr uint64_t kResetOffset = 2;

  // events must outlive the device.
  AcpiPm(VmEvents& events, const AcpiPmConfig& config) : events_(events), config_(config) {}

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  void write_sleep_control(uint8_t value);

  VmEvents& events_;
  const AcpiPmConfig config_;
  std::mutex mu_;
  uint8_t sleep_status_ = 0;
  bool warned_sleep_ = false;
};

}  // namespace skiff

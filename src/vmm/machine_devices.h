// The devices of skiff's x86 machine and their place on the buses: COM1
// (16550 + its host back end), CMOS RTC, i8042, the ACPI sleep/reset block,
// the debug-exit port and the port-0x80 boot marker. They are created once
// and survive guest reboots (reset() returns them to power-on state; CMOS
// NVRAM and the host side of the console are kept).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <memory>

#include "base/result.h"
#include "devices/bus.h"
#include "devices/interrupt.h"
#include "vmm/config.h"

namespace skiff {

class AcpiPm;
class CharBackend;
class CmosRtc;
class DebugExit;
class Ged;
class I8042;
class InputPump;
class PostCode;
class Serial16550;

// An IOAPIC/PIC input driven through a callback (the Machine's KVM_IRQ_LINE).
class GsiLine final : public IrqLine {
 public:
  GsiLine(uint32_t gsi, std::function<void(uint32_t, bool)> set) : gsi_(gsi), set_(std::move(set)) {}
  void set_level(bool high) override { set_(gsi_, high); }

 private:
  uint32_t gsi_;
  std::function<void(uint32_t, bool)> set_;
};

class MachineDevices {
 public:
  [[nodiscard]] static Result<std::unique_ptr<MachineDevices>> create(
      const VmConfig& config, VmEvents& events, std::function<void(uint32_t, bool)> set_irq,
      Bus& pio, Bus& mmio);
  ~MachineDevices();

  // Power-on state for a guest reboot.
  void reset();

  // Per-device I/O counters for vm.counters ("serial": tx_bytes, ...).
  [[nodiscard]] std::map<std::string, std::map<std::string, uint64_t>> counters() const;

  // Latches a power-button event in the GED and raises its interrupt.
  void press_power_button();

 private:
  MachineDevices() = default;

  std::unique_ptr<GsiLine> com1_irq_;
  std::unique_ptr<CharBackend> serial_backend_;
  std::shared_ptr<Serial16550> serial_;
  std::unique_ptr<InputPump> serial_input_;  // after serial_: stops first
  std::shared_ptr<CmosRtc> rtc_;
  std::shared_ptr<I8042> i8042_;
  std::shared_ptr<AcpiPm> acpi_pm_;
  std::shared_ptr<DebugExit> debug_exit_;
  std::shared_ptr<PostCode> post_code_;
  std::unique_ptr<GsiLine> ged_irq_;
  std::shared_ptr<Ged> ged_;
};

}  // namespace skiff

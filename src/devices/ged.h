// Ged: the register half of an ACPI Generic Event Device (ACPI 6.5 §5.6.9,
// _HID "ACPI0013"). HW-reduced ACPI has no fixed-feature events, so platform
// events (the power button today; CPU and memory hotplug later) reach the
// guest as an interrupt on the GED's _CRS line, and the GED's _EVT method
// reads this register to learn which event fired (the AML side is
// arch/x86/ged_aml.h).
//
// Register (one byte at offset 0, I/O port x86::kPortGed):
//   read   the pending event bits (kEventPowerButton, ...), then clears
//          them and lowers the interrupt line (read-to-clear, so an event
//          is handled exactly once by _EVT);
//   write  ignored.
// The line is level-triggered, active high: it stays up while any event is
// pending, so an event raised while the guest is busy is not lost.
//
// Threads: trigger() from the API thread, read() from vCPU threads; one
// mutex guards the pending bits and the line level.
#pragma once

#include <cstdint>
#include <mutex>
#include <span>

#include "devices/bus.h"
#include "devices/interrupt.h"

namespace skiff {

class Ged : public BusDevice {
 public:
  static constexpr uint64_t kSize = 1;
  static constexpr uint8_t kEventPowerButton = 1u << 0;

  explicit Ged(IrqLine& irq) : irq_(irq) {}

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Latches `events` (kEvent* bits) and raises the line.
  void trigger(uint8_t events);
  // Power-on state: nothing pending, line low (guest reboot).
  void reset();

  [[nodiscard]] uint8_t pending() const;
  // Events raised so far (for vm.counters).
  [[nodiscard]] uint64_t triggered() const;

 private:
  IrqLine& irq_;
  mutable std::mutex mu_;
  uint8_t pending_ = 0;
  bool level_ = false;
  uint64_t triggered_ = 0;
};

}  // namespace skiff

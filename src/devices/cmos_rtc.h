// CmosRtc: the MC146818 real-time clock and its 128 bytes of CMOS RAM, at
// index port 0x70 (offset 0) and data port 0x71 (offset 1).
//
// Datasheet: Motorola MC146818A "Real-Time Clock Plus RAM"; the PC's use of
// the NVRAM bytes follows QEMU's pc_cmos_init (hw/i386/pc.c) and SeaBIOS.
//
// Emulated:
// - Time registers 0x00/02/04/06/07/08/09 and the century byte 0x32, read
//   from the injected clock (UTC) plus a guest-set offset at read time, in
//   BCD or binary (register B bit 2) and 24h or 12h (bit 1) as the guest
//   selects. Writes to a time register move the offset; with B.SET the clock
//   is frozen, the writes edit the frozen time, and clearing SET commits it.
// - Register A: divider/rate bits stored. UIP (bit 7) is set only during the
//   last 244 us of each second (the datasheet's tBUC before an update), so a
//   guest waiting for UIP to clear waits at most 244 us, and one waiting
//   for the rising edge to synchronise with the second sees it.
// - Register B (default 0x02: 24h, BCD, like a PC BIOS), C (reads 0: no
//   interrupt flags), D (VRT set: the battery is good).
// - NVRAM 0x0e-0x7f, persisting across reset() (guest reboot); memory-size
//   bytes 0x15-0x18, 0x30/0x31, 0x34/0x35 and 0x5b-0x5d filled as QEMU does.
//
// Ignored: IRQ 8 (periodic, alarm and update-ended interrupts are never
// raised, C never shows a flag), alarms (their registers are plain RAM),
// daylight-saving (DSE), the square-wave output, the NMI mask (bit 7 of the
// index), the second 128-byte bank at 0x72/0x73.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <functional>
#include <mutex>
#include <span>

#include "devices/bus.h"

namespace skiff {

// RAM sizes as the machine builder splits them around the PCI hole.
struct CmosMemoryConfig {
  uint64_t below_4g_bytes = 0;  // RAM from 0 up to the hole
  uint64_t above_4g_bytes = 0;  // RAM from 4 GiB up
};

class CmosRtc : public BusDevice {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;

  static constexpr uint64_t kSize = 2;  // index + data ports
  static constexpr size_t kRamSize = 128;

  // clock defaults to the host's system clock.
  explicit CmosRtc(const CmosMemoryConfig& memory, Clock clock = {});

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Guest reboot: control registers to power-on values; NVRAM, the index and
  // the clock offset survive (the battery keeps them).
  void reset();

 private:
  uint8_t read_register(uint8_t index);
  void write_register(uint8_t index, uint8_t value);
  [[nodiscard]] std::tm guest_time() const;  // broken-down UTC, offset applied
  [[nodiscard]] uint8_t encode(int value) const;
  [[nodiscard]] int decode(uint8_t value) const;
  [[nodiscard]] uint8_t encode_hours(int hours) const;
  [[nodiscard]] int decode_hours(uint8_t value) const;
  void set_time_field(std::tm& tm, uint8_t index, uint8_t value) const;
  void commit_time(std::tm tm);
  void reset_control_locked();

  Clock clock_;
  std::mutex mu_;
  uint8_t index_ = 0;
  uint8_t ram_[kRamSize] = {};  // control registers and NVRAM; time bytes unused
  int64_t offset_seconds_ = 0;  // guest time - host time
  bool frozen_ = false;         // register B SET: frozen_time_ is what reads see
  std::tm frozen_time_{};
};

}  // namespace skiff

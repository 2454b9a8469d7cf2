// I8042: the PS/2 keyboard controller, reduced to what Linux and test guests
// need from it — chiefly the reset line (`reboot=k`) and a probe that
// answers sanely.
//
// Reference: IBM PC/AT Technical Reference, "Keyboard Controller"; the
// command set as Linux's drivers/input/serio/i8042.h uses it.
//
// Registration: one device at base 0x60 with length kSize (5): offset 0 is
// the data port (0x60), offset 4 the status/command port (0x64). Offsets
// 1-3 (0x61 port B, 0x62, 0x63) are not ours: reads return 0xff and writes
// are ignored. With KVM's in-kernel PIT, port 0x61 never reaches userspace.
//
// Emulated: status register (OBF, SYS, CMD/DATA, unlocked), controller
// RAM/command byte read/write (0x20-0x3f / 0x60-0x7f), self-test (0xAA ->
// 0x55), keyboard and aux interface tests (0xAB / 0xA9 -> 0x00), port
// disable/enable (0xAD/0xAE/0xA7/0xA8, reflected in the command byte),
// output port read/write (0xD0/0xD1; clearing bit 0 resets the machine),
// write-to-output-buffer loop commands (0xD2/0xD3, Linux's AUX probe), and
// output-line pulses (0xF0-0xFF; bit 0 clear pulses reset -> request_reset()).
//
// Ignored: no keyboard or mouse is attached (bytes written to them are
// dropped, so Linux's atkbd/psmouse probes time out), no IRQ 1/12 is raised,
// A20 is always enabled, the data port reads 0 when the output buffer is
// empty.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <span>

#include "devices/bus.h"
#include "devices/interrupt.h"

namespace skiff {

class I8042 : public BusDevice {
 public:
  static constexpr uint64_t kSize = 5;           // 0x60..0x64
  static constexpr uint64_t kDataOffset = 0;     // port 0x60
  static constexpr uint64_t kCommandOffset = 4;  // port 0x64

  // events must outlive the device.
  explicit I8042(VmEvents& events);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  void reset();

 private:
  struct OutputByte {
    uint8_t value;
    bool aux;  // came from the aux (mouse) port: status bit 5
  };

  uint8_t read_status() const;
  uint8_t read_data();
  void write_command(uint8_t cmd);
  void write_data(uint8_t value);
  void push_output(uint8_t value, bool aux = false);
  void reset_locked();

  VmEvents& events_;
  std::mutex mu_;
  uint8_t ram_[32] = {};  // controller RAM; ram_[0] is the command byte
  uint8_t output_port_ = 0;
  uint8_t pending_command_ = 0;  // command waiting for its data byte, 0 if none
  bool last_write_was_command_ = false;
  std::deque<OutputByte> output_;
};

}  // namespace skiff

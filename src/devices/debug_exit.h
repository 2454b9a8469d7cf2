// DebugExit: QEMU's isa-debug-exit device, so test guests can end the VM
// with a status: a write of v exits with status (v << 1) | 1.
//
// Reference: QEMU hw/misc/debugexit.c. QEMU accepts 1- to 4-byte accesses,
// ignores the offset within its range, uses the whole little-endian value
// (not just the low byte) and passes (v << 1) | 1 to exit(), so the status a
// shell sees is the low 8 bits of that; a 0x10 write gives 33. Reads return
// 0 (the only way a guest can detect the device).
//
// skiff registers it at port 0xf4 with length 4 (QEMU's common
// "-device isa-debug-exit,iobase=0xf4,iosize=0x04"). request_exit() receives
// (v << 1) | 1 truncated to int exactly as QEMU computes it; the vmm layer
// takes the low 8 bits when it turns it into a process exit status.
//
// Ignored: 8-byte accesses (QEMU rejects them; here they are ignored too).
#pragma once

#include <cstdint>
#include <span>

#include "devices/bus.h"
#include "devices/interrupt.h"

namespace skiff {

class DebugExit : public BusDevice {
 public:
  static constexpr uint64_t kSize = 4;

  // events must outlive the device.
  explicit DebugExit(VmEvents& events) : events_(events) {}

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // The status QEMU computes for a written value (exposed for tests/docs).
  static int exit_status_for(uint32_t value);

 private:
  VmEvents& events_;
};

}  // namespace skiff

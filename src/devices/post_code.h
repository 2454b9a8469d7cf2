// PostCode: the boot-progress port 0x80, with Cloud Hypervisor's
// convention: a guest writes a marker byte at interesting points of its boot
// and the VMM logs how long after process start it got there, for boot-time
// measurement without a serial console.
//
// Reference: Cloud Hypervisor devices/src/legacy/debug_port.rs (behaviour
// only); the port itself is the PC's POST diagnostic port.
//
// Emulated: each write logs "guest reached boot marker 0x<v> after <N.NNN>
// ms" (info) and is recorded with its time in a bounded list (the first
// kMaxMarkers are kept; later ones are counted). Logging stops after
// kMaxLoggedMarkers writes, so a guest that uses port 0x80 as an I/O delay
// (Linux's outb_p without a KVM paravirt io_delay) cannot flood the log.
// Ignored: reads return 0xff (nothing is there on a PC either); only the
// low byte of a wider write is the marker.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

#include "devices/bus.h"

namespace skiff {

struct BootMarker {
  uint8_t value;
  std::chrono::nanoseconds since_start;  // since_process_start() at the write
};

class PostCode : public BusDevice {
 public:
  static constexpr uint64_t kSize = 1;
  static constexpr size_t kMaxMarkers = 64;
  static constexpr uint64_t kMaxLoggedMarkers = 1024;

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Recorded markers in write order (at most kMaxMarkers).
  [[nodiscard]] std::vector<BootMarker> markers() const;
  // Every write, including those not recorded.
  [[nodiscard]] uint64_t total_writes() const;

 private:
  mutable std::mutex mu_;
  std::vector<BootMarker> markers_;
  uint64_t total_ = 0;
};

}  // namespace skiff

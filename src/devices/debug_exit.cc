#include "devices/debug_exit.h"

#include "base/log.h"

namespace skiff {

int DebugExit::exit_status_for(uint32_t value) {
  // QEMU: exit((val << 1) | 1) with a 64-bit val converted to int; keep the
  // same truncation (the low 32 bits) without signed-overflow UB.
  uint64_t wide = (static_cast<uint64_t>(value) << 1) | 1;
  return static_cast<int>(static_cast<uint32_t>(wide));
}

void DebugExit::read(uint64_t, std::span<uint8_t> data) {
  for (auto& b : data) b = 0;
}

void DebugExit::write(uint64_t, std::span<const uint8_t> data) {
  if (data.empty() || data.size() > 4) return;
  uint32_t value = 0;
  for (size_t i = 0; i < data.size(); ++i) value |= static_cast<uint32_t>(data[i]) << (8 * i);
  int status = exit_status_for(value);
  LOG_INFO("debug-exit: guest wrote {:#x}, exit status {}", value, status & 0xff);
  events_.request_exit(status);
}

}  // namespace skiff

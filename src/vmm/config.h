// VmConfig: everything needed to build one VM, independent of where it came
// from (command line today, the REST API's VmConfig JSON later).
#pragma once

#include <cstdint>
#include <string>

namespace skiff {

struct VmConfig {
  // Payload.
  std::string kernel;
  std::string initramfs;
  std::string cmdline;

  // CPUs and memory.
  uint32_t boot_cpus = 1;
  uint64_t memory_size = 512ull << 20;

  // The 16550 at 0x3f8: "tty", "off", "pty" or "file=PATH".
  std::string serial = "tty";

  // A reboot request (i8042, ACPI reset) ends skiff with status 0 instead of
  // restarting the guest.
  bool no_reboot = false;
};

inline constexpr uint32_t kMaxVcpus = 255;  // xAPIC IDs in the MADT are 8 bits
inline constexpr uint64_t kMinMemory = 8ull << 20;

}  // namespace skiff

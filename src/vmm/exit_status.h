// How a skiff process ends (documented in `skiff --help` and README.md).
#pragma once

#include <string>

#include "base/result.h"

namespace skiff {

enum class StopReason {
  kPoweroff,      // ACPI S5 or KVM system event shutdown
  kReset,         // i8042 reset line, ACPI reset register, KVM system event reset
  kDebugExit,     // the guest wrote to the isa-debug-exit port (0xf4)
  kGuestFailure,  // triple fault, unhandled exit, KVM emulation failure
  kHostError,     // a KVM call or host resource failed while running
};

struct Outcome {
  StopReason reason = StopReason::kPoweroff;
  int debug_status = 0;  // (v << 1) | 1 for kDebugExit
  std::string detail;    // for failures: what happened, on which vCPU
};

// Why a VM could not be started, with the exit status that says so.
struct StartError {
  int exit_status;
  Error error;
};

// Exit statuses. Odd values belong to the guest's debug-exit port
// ((v << 1) | 1, QEMU's isa-debug-exit convention), so skiff's own codes are even.
inline constexpr int kExitPoweroff = 0;
inline constexpr int kExitUsage = 2;          // invalid arguments or configuration
inline constexpr int kExitGuestFailure = 4;   // triple fault / unhandled exit / emulation failure
inline constexpr int kExitHostError = 6;      // KVM unavailable or failed, host resources

}  // namespace skiff

// What a device gets instead of ioctls (STYLE.md §3): an interrupt line it
// raises and lowers, and a way to tell the VM about machine-level events.
// The vmm layer implements both on top of KVM.
#pragma once

namespace skiff {

// A level-triggered interrupt input (an IOAPIC/PIC pin).
class IrqLine {
 public:
  virtual ~IrqLine() = default;
  virtual void set_level(bool high) = 0;
};

// Machine-level requests from devices (reset line, ACPI sleep, debug exit).
// Implementations must be callable from any vCPU thread and return quickly:
// they record the request and kick the vCPUs.
class VmEvents {
 public:
  virtual ~VmEvents() = default;
  virtual void request_poweroff() = 0;
  virtual void request_reset() = 0;
  // The guest asked the VMM to exit with this status (isa-debug-exit).
  virtual void request_exit(int status) = 0;
};

}  // namespace skiff

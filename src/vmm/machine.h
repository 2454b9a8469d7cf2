// Machine: turns a VmConfig into a running VM and runs it until it stops.
// build() reads top to bottom (STYLE.md §5): KVM VM, memory, interrupt
// controllers, devices, firmware tables, kernel, vCPUs. The RAM mapping,
// the buses and the devices on them outlive a guest reboot (CMOS NVRAM and
// the serial console survive it); the KVM VM and vCPUs are rebuilt.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "arch/x86/boot_loader.h"
#include "devices/bus.h"
#include "devices/interrupt.h"
#include "kvm/kvm.h"
#include "memory/guest_ram.h"
#include "vmm/config.h"
#include "vmm/device_events.h"
#include "vmm/exit_status.h"
#include "vmm/vcpu_runner.h"

namespace skiff {

class MachineDevices;
class PciDevices;
class VmPlumbing;

class Machine final : public VmEvents {
 public:
  // Checks the configuration and the host (KVM, capabilities), maps RAM and
  // creates the devices. Errors here are configuration or host errors.
  // `device_events` (optional) hears virtio devices being activated and
  // reset (vmm/device_events.h), from vCPU and device threads.
  [[nodiscard]] static std::expected<std::unique_ptr<Machine>, StartError> create(
      const VmConfig& config, VirtioEventSink device_events = {});
  ~Machine() override;

  // Boots the guest (again, after a reset) and blocks until it stops.
  [[nodiscard]] Outcome run();

  // Stops every vCPU at a consistent point (KVM_RUN returned, exit handled)
  // and freezes the guest's kvmclock; resume() continues without a clock
  // jump. Callable from any thread while run() is running.
  [[nodiscard]] Result<> pause();
  [[nodiscard]] Result<> resume();
  [[nodiscard]] bool paused() const { return pause_gate_.paused(); }

  // Per-vCPU KVM exit counts by reason (index = KVM_EXIT_*), for the API.
  // Counts start again from zero after a guest reboot (new vCPUs).
  [[nodiscard]] std::vector<ExitCounts> exit_counts() const;

  // Device I/O counters by device and counter name (vm.counters).
  [[nodiscard]] std::map<std::string, std::map<std::string, uint64_t>> device_counters() const;

  // The balloon (--balloon): a new target in bytes (vm.resize
  // desired_balloon), and what the guest's driver says it holds (vm.info
  // memory_actual_size). Errors / nothing without a balloon device.
  [[nodiscard]] Result<> resize_balloon(uint64_t bytes);
  [[nodiscard]] std::optional<uint64_t> balloon_actual_bytes() const;

  // An ACPI power-button press: the Generic Event Device raises its
  // interrupt and the guest's _EVT notifies \_SB.PWRB (arch/x86/ged_aml.h).
  void press_power_button();

  // vCPU threads are started and the VM is not stopping (pause() works).
  [[nodiscard]] bool running() const { return running_ && !stopping_; }

  // VmEvents, called from vCPU threads by devices.
  void request_poweroff() override;
  void request_reset() override;
  void request_exit(int status) override;

  // Drives a GSI on the current VM's in-kernel irqchip (IrqLine back end).
  void set_irq(uint32_t gsi, bool level);

 private:
  explicit Machine(VmConfig config);
  [[nodiscard]] Result<> build();
  void stop(Outcome outcome);
  void teardown();

  VmConfig config_;
  kvm::System kvm_;
  std::vector<kvm_cpuid_entry2> supported_cpuid_;
  std::vector<uint32_t> supported_msrs_;
  GuestRam ram_;
  Bus pio_{"pio"};
  Bus mmio_{"mmio"};
  std::unique_ptr<MachineDevices> devices_;

  std::shared_mutex vm_mu_;  // guards vm_ against set_irq during rebuild
  std::optional<kvm::Vm> vm_;
  std::vector<std::unique_ptr<VcpuRunner>> vcpus_;
  // PCI and virtio-pci devices; after vm_ so they go first (their
  // destructors unbind ioeventfds through the plumbing).
  std::unique_ptr<VmPlumbing> pci_plumbing_;
  std::unique_ptr<PciDevices> pci_;
  std::atomic<bool> running_{false};  // vCPU threads started and not yet torn down

  bool payload_error_ = false;  // build() failed on the kernel/initramfs/cmdline
  // Kernel and initramfs read (and identified) by create() before /dev/kvm
  // is opened; build() loads them and drops them, a reboot reads again.
  std::optional<x86::BootFiles> boot_files_;
  std::atomic<bool> stopping_{false};
  PauseGate pause_gate_;
  mutable std::mutex control_mu_;  // serialises pause/resume; guards vcpus_ for exit_counts()
  uint64_t paused_clock_ns_ = 0;
  std::mutex outcome_mu_;
  std::condition_variable outcome_cv_;
  std::optional<Outcome> outcome_;
};

}  // namespace skiff

// The PCI side of skiff's machine: the host bridge on both buses (config
// ports 0xcf8-0xcff and the ECAM window), the virtio-pci devices built from
// VmConfig (--disk, --rng), and one I/O thread per virtio device (blk0,
// blk1, ..., rng0) that waits on the device's queue eventfds.
//
// KVM plumbing (DESIGN.md: devices never call ioctls): VmPlumbing turns
// the devices' MSI messages into KVM_SIGNAL_MSI and their notify-address
// bindings into KVM_IOEVENTFD on whatever VM exists now. The VM is rebuilt
// on a guest reboot; reset() unmaps every BAR first (dropping bindings on
// the old VM) and the guest's re-enumeration binds them on the new one.
//
// Interrupts: MSI-X through irqfd on KVM MSI routes (VmPlumbing), one
// eventfd write per message from the device thread. INTx: INTA# of the
// device in slot S on GSI x86::pci_intx_gsi(S, 0) (arch/x86/pci_irq.h, the
// function the DSDT's _PRT is built from; also written to Interrupt Line),
// shared GSIs wired-OR (PciIntxRouter).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "devices/bus.h"
#include "devices/pci/pci_device.h"
#include "devices/pci/pci_root.h"
#include "kvm/kvm.h"
#include "memory/guest_memory.h"
#include "vmm/config.h"
#include "vmm/device_events.h"

namespace skiff {

namespace pci {
class PciRoot;
}
namespace virtio {
class VirtioPciDevice;
class VirtioBalloon;
}  // namespace virtio
class PciIntxRouter;
class VirtioWorker;
class CharBackend;
class InputPump;

// MsiSender and IoEventRegistrar over the Machine's current kvm::Vm.
//
// MSI delivery goes through irqfd: each distinct (address, data) message
// gets a GSI with an MSI route (KVM_SET_GSI_ROUTING, which also restates
// KVM's default routes for GSIs 0-23) and an eventfd bound to it
// (KVM_IRQFD); sending is one eventfd write from the device thread.
// Masking and pending bits stay in the device (pci::Msix). The number of
// routes is bounded (a guest reprogramming vectors forever cannot grow the
// table); past the bound, or if routing fails, KVM_SIGNAL_MSI is used.
class VmPlumbing final : public pci::MsiSender, public pci::IoEventRegistrar {
 public:
  static constexpr size_t kMaxMsiRoutes = 256;
  static constexpr uint32_t kFirstMsiGsi = 24;  // after the IOAPIC's 24 pins

  VmPlumbing(std::shared_mutex& vm_mu, std::optional<kvm::Vm>& vm) : vm_mu_(vm_mu), vm_(vm) {}
  void send_msi(uint64_t address, uint32_t data) override;
  [[nodiscard]] Result<> bind_ioevent(uint64_t address, uint32_t len, int eventfd) override;
  void unbind_ioevent(uint64_t address, uint32_t len, int eventfd) override;

  // The VM was destroyed (its routes and irqfds with it): forget them.
  void vm_destroyed();
  [[nodiscard]] size_t msi_routes() const;

 private:
  struct Route {
    uint32_t gsi;
    EventFd fd;
  };
  // Adds a route for (address, data) on the current VM; null if it cannot.
  const Route* add_route_locked(uint64_t address, uint32_t data);

  std::shared_mutex& vm_mu_;
  std::optional<kvm::Vm>& vm_;
  std::atomic<bool> msi_error_logged_{false};
  mutable std::shared_mutex routes_mu_;  // shared: lookups (the hot path)
  std::map<std::pair<uint64_t, uint32_t>, Route> routes_;
  bool routing_failed_ = false;
};

// The 64-bit PCI window the host bridge forwards (DSDT _CRS) and BARs may
// use: 32 GiB from the first 1 GiB boundary above guest RAM. Empty if that
// would pass 2^39, the smallest physical address width of current x86-64
// CPUs (a guest cannot reach what its CPU cannot address).
[[nodiscard]] pci::BarWindow pci_mmio64_window(uint64_t memory_size);

class PciDevices {
 public:
  // `mem`, the buses and `plumbing` must outlive the returned object.
  // `device_events` (optional) hears every device's activated/reset events,
  // from vCPU and device threads.
  [[nodiscard]] static Result<std::unique_ptr<PciDevices>> create(
      const VmConfig& config, const GuestMemory& mem, Bus& pio, Bus& mmio, VmPlumbing& plumbing,
      std::function<void(uint32_t, bool)> set_irq, VirtioEventSink device_events = {});
  ~PciDevices();

  // Machine reset: every function to power-on, BARs unmapped.
  void reset();

  // Per-device counters for vm.counters ("blk0": read_ops, ...).
  [[nodiscard]] std::map<std::string, std::map<std::string, uint64_t>> counters() const;

  // The --balloon device (vm.resize desired_balloon, vm.info); null without one.
  [[nodiscard]] virtio::VirtioBalloon* balloon() const { return balloon_; }

 private:
  PciDevices(Bus& pio, Bus& mmio);
  [[nodiscard]] Result<> add(std::shared_ptr<virtio::VirtioPciDevice> dev, std::string name);
  // --console: the host end and its reader thread (console0's input).
  [[nodiscard]] Result<std::unique_ptr<virtio::VirtioDevice>> create_console(
      const VmConfig& config);

  Bus& pio_;
  Bus& mmio_;
  std::unique_ptr<pci::PciRoot> root_;
  std::unique_ptr<PciIntxRouter> intx_;  // outlives the devices (declared before them)
  struct Entry {
    std::string name;
    std::shared_ptr<virtio::VirtioPciDevice> device;
    std::unique_ptr<VirtioWorker> worker;
  };
  std::vector<Entry> devices_;
  VirtioEventSink device_events_;
  std::unique_ptr<CharBackend> console_backend_;
  std::unique_ptr<InputPump> console_input_;  // calls into console0: stopped first
  virtio::VirtioBalloon* balloon_ = nullptr;  // owned by its entry in devices_
};

}  // namespace skiff

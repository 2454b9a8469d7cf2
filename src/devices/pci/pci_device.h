// PciDevice: what the PCI root needs from a function on bus 0, and the
// small interfaces a PCI device gets instead of ioctls (STYLE.md §3): an
// MSI sender and a registrar for MMIO notification eventfds. The vmm
// implements both over KVM (KVM_SIGNAL_MSI, KVM_IOEVENTFD).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "base/result.h"
#include "devices/pci/pci_config.h"

namespace skiff::pci {

// Delivers one MSI message (PCI 3.0 §6.8: a dword write of `data` to
// `address`; on x86 the address selects the LAPIC, Intel SDM Vol. 3
// §11.11). Called from device threads; must be thread-safe.
class MsiSender {
 public:
  virtual ~MsiSender() = default;
  virtual void send_msi(uint64_t address, uint32_t data) = 0;
};

// Binds an eventfd to guest writes of `len` bytes at guest-physical
// `address`, so those writes signal the eventfd in the kernel instead of
// exiting to the VMM. Unbinding something that is not bound is not an
// error to the caller (the VM may have been rebuilt).
class IoEventRegistrar {
 public:
  virtual ~IoEventRegistrar() = default;
  [[nodiscard]] virtual Result<> bind_ioevent(uint64_t address, uint32_t len, int eventfd) = 0;
  virtual void unbind_ioevent(uint64_t address, uint32_t len, int eventfd) = 0;
};

// A function on bus 0. The root serialises config accesses and BAR
// mapping changes; BAR accesses come straight from vCPU threads (the
// device locks what it shares with its own threads).
class PciDevice {
 public:
  virtual ~PciDevice() = default;

  [[nodiscard]] virtual PciConfigSpace& config() = 0;
  // Before a guest config read of [offset, offset + size): refresh bytes
  // that mirror other state (virtio's PCI configuration access window).
  virtual void config_reading(uint16_t /*offset*/, size_t /*size*/) {}
  // After a guest config write was applied through the masks: react to
  // changed control bits (MSI-X enable, INTx disable, ...).
  virtual void config_written(uint16_t /*offset*/, size_t /*size*/) {}

  // Accesses inside memory BAR `bar` (offset from the BAR's base).
  virtual void bar_read(unsigned bar, uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void bar_write(unsigned bar, uint64_t offset, std::span<const uint8_t> data) = 0;
  // The guest moved BAR `bar` or toggled memory decode: it now answers at
  // `address`, or nowhere (nullopt). The device moves what it bound to
  // the old address (ioeventfds).
  virtual void bar_mapped(unsigned /*bar*/, std::optional<uint64_t> /*address*/) {}

  // Machine reset: power-on state (the root resets config() itself).
  virtual void reset() {}
};

}  // namespace skiff::pci

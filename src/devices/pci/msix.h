// MSI-X for one PCI function (PCI Local Bus 3.0 §6.8.2): the capability in
// config space, the vector table and the Pending Bit Array, which live in
// one of the function's memory BARs, and delivery through an MsiSender.
//
// Behaviour the driver relies on (§6.8.2.3, §6.8.2.9, §6.8.2.10):
//   - every vector starts masked; a message for a masked vector (or while
//     Function Mask is set) sets its pending bit instead of being sent, and
//     is sent when the vector and function are unmasked;
//   - the PBA is read-only;
//   - table entries are accessed as aligned dwords or qwords; other
//     accesses read all-ones and are ignored on write (§6.8.2: software
//     "must use aligned full DWORD or aligned full QWORD transactions").
// The message address and data are the guest's: they go to the sender
// unchanged, and KVM decides what an address means (a non-LAPIC address is
// dropped there).
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

#include "base/result.h"
#include "devices/pci/pci_config.h"
#include "devices/pci/pci_device.h"

namespace skiff::pci {

inline constexpr uint8_t kCapIdMsix = 0x11;
inline constexpr uint16_t kMsixControlEnable = 1 << 15;
inline constexpr uint16_t kMsixControlFunctionMask = 1 << 14;
inline constexpr uint64_t kMsixEntrySize = 16;
inline constexpr uint16_t kMsixMaxVectors = 2048;

class Msix {
 public:
  // `sender` must outlive this object.
  Msix(uint16_t num_vectors, MsiSender& sender);

  [[nodiscard]] uint16_t num_vectors() const { return num_vectors_; }
  [[nodiscard]] uint64_t table_bytes() const { return num_vectors_ * kMsixEntrySize; }
  [[nodiscard]] uint64_t pba_bytes() const { return ((num_vectors_ + 63) / 64) * 8ull; }

  // Adds the capability: table at `table_offset` and PBA at `pba_offset`
  // of BAR `bar` (offsets 8-byte aligned).
  [[nodiscard]] Result<> add_capability(PciConfigSpace& config, uint8_t bar, uint32_t table_offset,
                                        uint32_t pba_offset);
  // After a config write: picks up Enable / Function Mask and sends what
  // became unmasked.
  void config_written(const PciConfigSpace& config);

  [[nodiscard]] bool enabled() const;
  // Sends vector `vector`, or marks it pending while masked. Returns false
  // when MSI-X is disabled or the vector does not exist (the caller may
  // fall back to INTx).
  bool notify(uint16_t vector);

  // BAR accesses, offsets relative to the table / PBA start.
  void table_read(uint64_t offset, std::span<uint8_t> data) const;
  void table_write(uint64_t offset, std::span<const uint8_t> data);
  void pba_read(uint64_t offset, std::span<uint8_t> data) const;

  [[nodiscard]] bool pending(uint16_t vector) const;
  [[nodiscard]] bool masked(uint16_t vector) const;

  // Power-on: disabled, all vectors masked with zero address/data, nothing
  // pending.
  void reset();

 private:
  struct Entry {
    uint32_t addr_lo = 0;
    uint32_t addr_hi = 0;
    uint32_t data = 0;
    uint32_t control = 1;  // bit 0: masked
  };
  [[nodiscard]] bool vector_masked_locked(uint16_t v) const;
  void send_locked(uint16_t v);
  void deliver_unmasked_locked();

  uint16_t num_vectors_;
  MsiSender& sender_;
  uint16_t cap_offset_ = 0;
  mutable std::mutex mu_;
  bool enabled_ = false;
  bool function_masked_ = false;
  std::vector<Entry> table_;
  std::vector<uint64_t> pba_;
};

}  // namespace skiff::pci

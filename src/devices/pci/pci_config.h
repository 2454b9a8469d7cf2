// PciConfigSpace: the 4 KiB configuration space of one PCI Express function
// with a type-0 header (PCI Local Bus 3.0 §6.1, PCIe 5.0 §7.5.1).
//
// Every byte has a write mask: a guest write changes only the bits the
// mask allows, so read-only fields (IDs, class, capability pointers, BAR
// type bits) cannot be changed however hostile the value. BAR sizing
// (§6.2.5.1) falls out of the masks: the low address bits of a BAR of size
// S are read-only zero, so writing all-ones reads back ~(S - 1) | type.
//
// Supported: memory BARs (32- and 64-bit, power-of-two sizes >= 4 KiB so a
// BAR never shares a page), a capability list, INTx pin/line.
// Not supported: I/O BARs, expansion ROM (reads 0), extended capabilities
// (offsets 0x100-0xfff read 0: PCIe 5.0 §7.6.3 "a zero header" ends the
// list), status write-1-to-clear bits (skiff never sets error bits).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>

#include "base/result.h"

namespace skiff::pci {

inline constexpr size_t kConfigSize = 4096;       // PCIe extended config space
inline constexpr size_t kLegacyConfigSize = 256;  // what 0xcf8/0xcfc reaches
inline constexpr unsigned kNumBars = 6;

// Type-0 header registers (PCI 3.0 §6.1).
inline constexpr uint16_t kRegVendorId = 0x00;
inline constexpr uint16_t kRegDeviceId = 0x02;
inline constexpr uint16_t kRegCommand = 0x04;
inline constexpr uint16_t kRegStatus = 0x06;
inline constexpr uint16_t kRegRevision = 0x08;
inline constexpr uint16_t kRegClassProgIf = 0x09;  // prog-if, subclass, class
inline constexpr uint16_t kRegHeaderType = 0x0e;
inline constexpr uint16_t kRegBar0 = 0x10;
inline constexpr uint16_t kRegSubsystemVendorId = 0x2c;
inline constexpr uint16_t kRegSubsystemId = 0x2e;
inline constexpr uint16_t kRegCapabilitiesPtr = 0x34;
inline constexpr uint16_t kRegInterruptLine = 0x3c;
inline constexpr uint16_t kRegInterruptPin = 0x3d;

inline constexpr uint16_t kCommandIoSpace = 1 << 0;
inline constexpr uint16_t kCommandMemorySpace = 1 << 1;
inline constexpr uint16_t kCommandBusMaster = 1 << 2;
inline constexpr uint16_t kCommandIntxDisable = 1 << 10;
inline constexpr uint16_t kStatusInterrupt = 1 << 3;
inline constexpr uint16_t kStatusCapabilitiesList = 1 << 4;

inline constexpr uint32_t kBarMemType64 = 0x4;  // bits 2:1 = 10b
inline constexpr uint32_t kBarMemPrefetchable = 0x8;
inline constexpr uint64_t kMinBarSize = 4096;

struct PciIds {
  uint16_t vendor_id = 0;
  uint16_t device_id = 0;
  uint16_t subsystem_vendor_id = 0;
  uint16_t subsystem_id = 0;
  uint8_t revision = 0;
  uint32_t class_code = 0;    // class << 16 | subclass << 8 | prog-if
  uint8_t interrupt_pin = 0;  // 0 none, 1 INTA# .. 4 INTD#
};

struct BarInfo {
  uint64_t size = 0;  // 0: BAR not implemented
  bool is64 = false;
  bool prefetchable = false;
};

class PciConfigSpace {
 public:
  explicit PciConfigSpace(const PciIds& ids);

  // Declares a memory BAR. A 64-bit BAR uses `index` and `index + 1`.
  [[nodiscard]] Result<> add_memory_bar(unsigned index, uint64_t size, bool is64,
                                        bool prefetchable);
  [[nodiscard]] const BarInfo& bar(unsigned index) const { return bars_[index]; }
  // The base the BAR registers hold now (may be a sizing pattern).
  [[nodiscard]] uint64_t bar_address(unsigned index) const;
  // Placement by the VMM (no firmware runs before the guest).
  void set_bar_address(unsigned index, uint64_t address);

  // Appends a capability of `size` bytes (including the ID and next
  // pointer) to the list and returns its offset. Contents start zeroed and
  // read-only; the caller fills them and opens writable bits with
  // set_write_mask.
  [[nodiscard]] Result<uint16_t> add_capability(uint8_t id, uint16_t size);
  // Walks the capability list from the header (bounded, for tests and
  // devices): offset of the first capability with `id`.
  [[nodiscard]] std::optional<uint16_t> find_capability(uint8_t id) const;

  // Guest access; `offset + data.size()` must be within kConfigSize (the
  // root checks). Writes honour the write masks.
  void read(uint16_t offset, std::span<uint8_t> data) const;
  void write(uint16_t offset, std::span<const uint8_t> data);

  // Device-side access, ignoring masks.
  [[nodiscard]] uint8_t u8(uint16_t offset) const { return bytes_[offset]; }
  [[nodiscard]] uint16_t u16(uint16_t offset) const;
  [[nodiscard]] uint32_t u32(uint16_t offset) const;
  void set_u8(uint16_t offset, uint8_t v) { bytes_[offset] = v; }
  void set_u16(uint16_t offset, uint16_t v);
  void set_u32(uint16_t offset, uint32_t v);
  void set_write_mask(uint16_t offset, std::span<const uint8_t> mask);
  void set_write_mask_u16(uint16_t offset, uint16_t mask);

  // The INTx routing the VMM chose (Interrupt Line, §6.2.4), kept over reset.
  void set_interrupt_line(uint8_t line) {
    line_ = line;
    bytes_[kRegInterruptLine] = line;
  }

  [[nodiscard]] uint16_t command() const { return u16(kRegCommand); }
  [[nodiscard]] bool memory_enabled() const { return command() & kCommandMemorySpace; }

  // Power-on values of the guest-writable header fields; BARs back to the
  // VMM's placement. Capability contents are the owner's to reset.
  void reset();

 private:
  std::array<uint8_t, kConfigSize> bytes_{};
  std::array<uint8_t, kConfigSize> wmask_{};
  std::array<BarInfo, kNumBars> bars_{};
  std::array<uint64_t, kNumBars> placed_{};  // VMM placement, restored by reset()
  uint8_t line_ = 0;
  uint16_t last_cap_ = 0;      // offset of the last capability, 0 = none
  uint16_t next_free_ = 0x40;  // first byte after the header
};

}  // namespace skiff::pci

#include "devices/pci/pci_config.h"

#include <cstring>

namespace skiff::pci {

namespace {
// A capability list walk stops after this many entries: 256 bytes of
// legacy config space hold at most (256 - 0x40) / 4 capabilities, so a
// longer walk means a loop.
constexpr int kMaxCapabilities = 48;
}  // namespace

PciConfigSpace::PciConfigSpace(const PciIds& ids) {
  set_u16(kRegVendorId, ids.vendor_id);
  set_u16(kRegDeviceId, ids.device_id);
  set_u8(kRegRevision, ids.revision);
  set_u8(kRegClassProgIf, static_cast<uint8_t>(ids.class_code));
  set_u8(kRegClassProgIf + 1, static_cast<uint8_t>(ids.class_code >> 8));
  set_u8(kRegClassProgIf + 2, static_cast<uint8_t>(ids.class_code >> 16));
  set_u8(kRegHeaderType, 0);  // type 0, single function
  set_u16(kRegSubsystemVendorId, ids.subsystem_vendor_id);
  set_u16(kRegSubsystemId, ids.subsystem_id);
  set_u8(kRegInterruptPin, ids.interrupt_pin);
  // Writable: memory space, bus master, INTx disable (§6.2.2). I/O space
  // stays 0: there are no I/O BARs. Interrupt Line is a scratch register
  // for software (§6.2.4).
  set_write_mask_u16(kRegCommand, kCommandMemorySpace | kCommandBusMaster | kCommandIntxDisable);
  wmask_[kRegInterruptLine] = 0xff;
}

uint16_t PciConfigSpace::u16(uint16_t offset) const {
  uint16_t v;
  std::memcpy(&v, &bytes_[offset], 2);
  return v;
}

uint32_t PciConfigSpace::u32(uint16_t offset) const {
  uint32_t v;
  std::memcpy(&v, &bytes_[offset], 4);
  return v;
}

void PciConfigSpace::set_u16(uint16_t offset, uint16_t v) {
  std::memcpy(&bytes_[offset], &v, 2);
}
void PciConfigSpace::set_u32(uint16_t offset, uint32_t v) {
  std::memcpy(&bytes_[offset], &v, 4);
}

void PciConfigSpace::set_write_mask(uint16_t offset, std::span<const uint8_t> mask) {
  if (offset > kConfigSize || mask.size() > kConfigSize - offset) return;
  std::memcpy(&wmask_[offset], mask.data(), mask.size());
}

void PciConfigSpace::set_write_mask_u16(uint16_t offset, uint16_t mask) {
  uint8_t m[2];
  std::memcpy(m, &mask, 2);
  set_write_mask(offset, m);
}

Result<> PciConfigSpace::add_memory_bar(unsigned index, uint64_t size, bool is64,
                                        bool prefetchable) {
  if (index >= kNumBars || (is64 && index + 1 >= kNumBars))
    return fail("BAR {} does not exist (a 64-bit BAR needs two of the six slots)", index);
  if (size < kMinBarSize || (size & (size - 1)) != 0)
    return fail("BAR {} size {:#x} is not a power of two >= {:#x}", index, size, kMinBarSize);
  if (!is64 && size > (1ull << 31))
    return fail("32-bit BAR {} size {:#x} is too large", index, size);
  if (bars_[index].size != 0 || (is64 && bars_[index + 1].size != 0))
    return fail("BAR {} is already in use", index);
  if (index > 0 && bars_[index - 1].is64)
    return fail("BAR {} is the upper half of 64-bit BAR {}", index, index - 1);
  bars_[index] = BarInfo{size, is64, prefetchable};
  uint32_t type = (is64 ? kBarMemType64 : 0) | (prefetchable ? kBarMemPrefetchable : 0);
  uint16_t reg = static_cast<uint16_t>(kRegBar0 + 4 * index);
  set_u32(reg, type);
  uint64_t mask = ~(size - 1);
  uint32_t lo_mask = static_cast<uint32_t>(mask) & ~0xfu;  // type bits are read-only
  uint8_t m[4];
  std::memcpy(m, &lo_mask, 4);
  set_write_mask(reg, m);
  if (is64) {
    uint32_t hi_mask = static_cast<uint32_t>(mask >> 32);
    std::memcpy(m, &hi_mask, 4);
    set_write_mask(static_cast<uint16_t>(reg + 4), m);
  }
  return {};
}

uint64_t PciConfigSpace::bar_address(unsigned index) const {
  if (index >= kNumBars || bars_[index].size == 0) return 0;
  uint16_t reg = static_cast<uint16_t>(kRegBar0 + 4 * index);
  uint64_t addr = u32(reg) & ~0xfull;
  if (bars_[index].is64) addr |= static_cast<uint64_t>(u32(static_cast<uint16_t>(reg + 4))) << 32;
  return addr;
}

void PciConfigSpace::set_bar_address(unsigned index, uint64_t address) {
  if (index >= kNumBars || bars_[index].size == 0) return;
  const BarInfo& b = bars_[index];
  address &= ~(b.size - 1);
  if (!b.is64) address &= 0xffffffffull;
  placed_[index] = address;
  uint16_t reg = static_cast<uint16_t>(kRegBar0 + 4 * index);
  set_u32(reg, static_cast<uint32_t>(address) | (u32(reg) & 0xfu));
  if (b.is64) set_u32(static_cast<uint16_t>(reg + 4), static_cast<uint32_t>(address >> 32));
}

Result<uint16_t> PciConfigSpace::add_capability(uint8_t id, uint16_t size) {
  // Capabilities live in the legacy 256 bytes, dword aligned (§6.7).
  uint16_t start = static_cast<uint16_t>((next_free_ + 3) & ~3);
  if (size < 2 || start + size > kLegacyConfigSize)
    return fail("no room for a {}-byte capability {:#x} in config space", size, id);
  bytes_[start] = id;
  bytes_[start + 1] = 0;
  if (last_cap_ == 0)
    bytes_[kRegCapabilitiesPtr] = static_cast<uint8_t>(start);
  else
    bytes_[last_cap_ + 1] = static_cast<uint8_t>(start);
  set_u16(kRegStatus, u16(kRegStatus) | kStatusCapabilitiesList);
  last_cap_ = start;
  next_free_ = static_cast<uint16_t>(start + size);
  return start;
}

std::optional<uint16_t> PciConfigSpace::find_capability(uint8_t id) const {
  uint16_t off = bytes_[kRegCapabilitiesPtr] & 0xfc;
  for (int n = 0; off != 0 && n < kMaxCapabilities; ++n) {
    if (bytes_[off] == id) return off;
    off = bytes_[off + 1] & 0xfc;
  }
  return std::nullopt;
}

void PciConfigSpace::read(uint16_t offset, std::span<uint8_t> data) const {
  if (offset > kConfigSize || data.size() > kConfigSize - offset) {
    std::memset(data.data(), 0xff, data.size());
    return;
  }
  std::memcpy(data.data(), &bytes_[offset], data.size());
}

void PciConfigSpace::write(uint16_t offset, std::span<const uint8_t> data) {
  if (offset > kConfigSize || data.size() > kConfigSize - offset) return;
  for (size_t i = 0; i < data.size(); ++i) {
    uint8_t m = wmask_[offset + i];
    uint8_t& b = bytes_[offset + i];
    b = static_cast<uint8_t>((b & ~m) | (data[i] & m));
  }
}

void PciConfigSpace::reset() {
  set_u16(kRegCommand, 0);
  set_u16(kRegStatus, u16(kRegStatus) & kStatusCapabilitiesList);
  bytes_[kRegInterruptLine] = line_;
  for (unsigned i = 0; i < kNumBars; ++i)
    if (bars_[i].size != 0) set_bar_address(i, placed_[i]);
}

}  // namespace skiff::pci

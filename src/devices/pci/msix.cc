#include "devices/pci/msix.h"

#include <cstring>

namespace skiff::pci {

namespace {
bool aligned_access(uint64_t offset, size_t size) {
  return (size == 4 || size == 8) && offset % size == 0;
}
}  // namespace

Msix::Msix(uint16_t num_vectors, MsiSender& sender)
    : num_vectors_(num_vectors),
      sender_(sender),
      table_(num_vectors),
      pba_((num_vectors + 63) / 64) {}

Result<> Msix::add_capability(PciConfigSpace& config, uint8_t bar, uint32_t table_offset,
                              uint32_t pba_offset) {
  if (num_vectors_ == 0 || num_vectors_ > kMsixMaxVectors)
    return fail("MSI-X: {} vectors is outside [1, {}]", num_vectors_, kMsixMaxVectors);
  if (bar >= kNumBars || (table_offset | pba_offset) % 8 != 0)
    return fail("MSI-X: bad table/PBA placement (BAR {}, {:#x}, {:#x})", bar, table_offset,
                pba_offset);
  cap_offset_ = SKIFF_TRY(config.add_capability(kCapIdMsix, 12));
  // Message Control: table size N-1 (read-only), Enable and Function Mask
  // writable (§6.8.2.3).
  config.set_u16(static_cast<uint16_t>(cap_offset_ + 2), static_cast<uint16_t>(num_vectors_ - 1));
  config.set_write_mask_u16(static_cast<uint16_t>(cap_offset_ + 2),
                            kMsixControlEnable | kMsixControlFunctionMask);
  config.set_u32(static_cast<uint16_t>(cap_offset_ + 4), table_offset | bar);
  config.set_u32(static_cast<uint16_t>(cap_offset_ + 8), pba_offset | bar);
  return {};
}

void Msix::config_written(const PciConfigSpace& config) {
  if (cap_offset_ == 0) return;
  uint16_t control = config.u16(static_cast<uint16_t>(cap_offset_ + 2));
  std::lock_guard lock(mu_);
  enabled_ = control & kMsixControlEnable;
  function_masked_ = control & kMsixControlFunctionMask;
  deliver_unmasked_locked();
}

bool Msix::enabled() const {
  std::lock_guard lock(mu_);
  return enabled_;
}

bool Msix::vector_masked_locked(uint16_t v) const {
  return function_masked_ || (table_[v].control & 1);
}

void Msix::send_locked(uint16_t v) {
  const Entry& e = table_[v];
  sender_.send_msi(static_cast<uint64_t>(e.addr_hi) << 32 | e.addr_lo, e.data);
}

void Msix::deliver_unmasked_locked() {
  if (!enabled_ || function_masked_) return;
  for (uint16_t v = 0; v < num_vectors_; ++v) {
    uint64_t bit = 1ull << (v % 64);
    if ((pba_[v / 64] & bit) && !(table_[v].control & 1)) {
      pba_[v / 64] &= ~bit;
      send_locked(v);
    }
  }
}

bool Msix::notify(uint16_t vector) {
  std::lock_guard lock(mu_);
  if (!enabled_ || vector >= num_vectors_) return false;
  if (vector_masked_locked(vector)) {
    pba_[vector / 64] |= 1ull << (vector % 64);
    return true;
  }
  send_locked(vector);
  return true;
}

void Msix::table_read(uint64_t offset, std::span<uint8_t> data) const {
  std::memset(data.data(), 0xff, data.size());
  if (!aligned_access(offset, data.size()) || offset >= table_bytes()) return;
  std::lock_guard lock(mu_);
  const Entry& e = table_[offset / kMsixEntrySize];
  uint32_t words[4] = {e.addr_lo, e.addr_hi, e.data, e.control};
  std::memcpy(data.data(), reinterpret_cast<const uint8_t*>(words) + offset % kMsixEntrySize,
              data.size());
}

void Msix::table_write(uint64_t offset, std::span<const uint8_t> data) {
  if (!aligned_access(offset, data.size()) || offset >= table_bytes()) return;
  std::lock_guard lock(mu_);
  uint16_t v = static_cast<uint16_t>(offset / kMsixEntrySize);
  Entry& e = table_[v];
  uint32_t words[4] = {e.addr_lo, e.addr_hi, e.data, e.control};
  std::memcpy(reinterpret_cast<uint8_t*>(words) + offset % kMsixEntrySize, data.data(),
              data.size());
  e.addr_lo = words[0];
  e.addr_hi = words[1];
  e.data = words[2];
  // Vector Control: only bit 0 (Mask) is defined; the rest reads 0 (§6.8.2.9).
  e.control = words[3] & 1;
  deliver_unmasked_locked();
}

void Msix::pba_read(uint64_t offset, std::span<uint8_t> data) const {
  std::memset(data.data(), 0xff, data.size());
  if (!aligned_access(offset, data.size()) || offset >= pba_bytes()) return;
  std::lock_guard lock(mu_);
  std::memcpy(data.data(), reinterpret_cast<const uint8_t*>(pba_.data()) + offset, data.size());
}

bool Msix::pending(uint16_t vector) const {
  std::lock_guard lock(mu_);
  return vector < num_vectors_ && (pba_[vector / 64] >> (vector % 64)) & 1;
}

bool Msix::masked(uint16_t vector) const {
  std::lock_guard lock(mu_);
  return vector < num_vectors_ && vector_masked_locked(vector);
}

void Msix::reset() {
  std::lock_guard lock(mu_);
  enabled_ = false;
  function_masked_ = false;
  for (auto& e : table_) e = Entry{};
  for (auto& p : pba_) p = 0;
}

}  // namespace skiff::pci

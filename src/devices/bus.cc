#include "devices/bus.h"

#include <algorithm>

#include "base/log.h"

namespace skiff {

Result<> Bus::insert(std::shared_ptr<BusDevice> device, uint64_t base, uint64_t len) {
  if (len == 0) return fail("{} bus: refusing zero-sized range at {:#x}", name_, base);
  if (base + len < base) return fail("{} bus: range at {:#x} wraps around", name_, base);
  std::unique_lock lock(mu_);
  auto next = ranges_.lower_bound(base);
  if (next != ranges_.end() && next->first < base + len)
    return fail("{} bus: range [{:#x}, {:#x}) overlaps the device at {:#x}", name_, base,
                base + len, next->first);
  if (next != ranges_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.len > base)
      return fail("{} bus: range [{:#x}, {:#x}) overlaps the device at {:#x}", name_, base,
                  base + len, prev->first);
  }
  ranges_.emplace(base, Range{len, std::move(device)});
  return {};
}

Result<> Bus::remove(uint64_t base) {
  std::unique_lock lock(mu_);
  if (ranges_.erase(base) == 0) return fail("{} bus: no device at {:#x}", name_, base);
  return {};
}

std::shared_ptr<BusDevice> Bus::lookup(uint64_t addr, uint64_t len, uint64_t* offset) const {
  std::shared_lock lock(mu_);
  auto it = ranges_.upper_bound(addr);
  if (it == ranges_.begin()) return nullptr;
  --it;
  uint64_t off = addr - it->first;
  if (off >= it->second.len || len > it->second.len - off) return nullptr;
  *offset = off;
  return it->second.device;
}

void Bus::log_unclaimed(uint64_t addr, size_t len, bool is_write) {
  std::lock_guard lock(unclaimed_mu_);
  if (unclaimed_logged_.size() > 256 || !unclaimed_logged_.insert(addr).second) return;
  LOG_DEBUG("{} bus: unclaimed {}-byte {} at {:#x}", name_, len, is_write ? "write" : "read",
            addr);
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) {
  uint64_t offset = 0;
  auto dev = lookup(addr, data.size(), &offset);
  if (!dev) {
    std::fill(data.begin(), data.end(), uint8_t{0xff});
    log_unclaimed(addr, data.size(), false);
    return false;
  }
  dev->read(offset, data);
  return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) {
  uint64_t offset = 0;
  auto dev = lookup(addr, data.size(), &offset);
  if (!dev) {
    log_unclaimed(addr, data.size(), true);
    return false;
  }
  dev->write(offset, data);
  return true;
}

}  // namespace skiff

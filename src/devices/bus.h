// Bus: dispatches port I/O or MMIO accesses to the device that owns the
// address. A device sees only an offset from its own base (STYLE.md §2).
// Ranges are checked at insert time: zero-sized or overlapping ranges are
// refused. An access that no device claims reads as all-ones and is logged
// once per address.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <span>
#include <string>

#include "base/result.h"

namespace skiff {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // data.size() is 1, 2, 4 or 8. A device fills all of data on read.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}

  [[nodiscard]] Result<> insert(std::shared_ptr<BusDevice> device, uint64_t base, uint64_t len);
  [[nodiscard]] Result<> remove(uint64_t base);

  // Return false (and read all-ones) when no device claims the whole access.
  bool read(uint64_t addr, std::span<uint8_t> data);
  bool write(uint64_t addr, std::span<const uint8_t> data);

 private:
  struct Range {
    uint64_t len;
    std::shared_ptr<BusDevice> device;
  };
  std::shared_ptr<BusDevice> lookup(uint64_t addr, uint64_t len, uint64_t* offset) const;
  void log_unclaimed(uint64_t addr, size_t len, bool is_write);

  std::string name_;
  mutable std::shared_mutex mu_;
  std::map<uint64_t, Range> ranges_;  // keyed by base
  std::mutex unclaimed_mu_;
  std::set<uint64_t> unclaimed_logged_;
};

}  // namespace skiff

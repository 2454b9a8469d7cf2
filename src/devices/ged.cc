#include "devices/ged.h"

#include <algorithm>

namespace skiff {

void Ged::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), uint8_t{0});
  if (data.empty() || offset != 0) return;
  std::lock_guard lock(mu_);
  data[0] = pending_;
  pending_ = 0;
  if (level_) {
    level_ = false;
    irq_.set_level(false);
  }
}

void Ged::write(uint64_t /*offset*/, std::span<const uint8_t> /*data*/) {}

void Ged::trigger(uint8_t events) {
  if (events == 0) return;
  std::lock_guard lock(mu_);
  pending_ |= events;
  ++triggered_;
  if (!level_) {
    level_ = true;
    irq_.set_level(true);
  }
}

void Ged::reset() {
  std::lock_guard lock(mu_);
  pending_ = 0;
  if (level_) {
    level_ = false;
    irq_.set_level(false);
  }
}

uint8_t Ged::pending() const {
  std::lock_guard lock(mu_);
  return pending_;
}

uint64_t Ged::triggered() const {
  std::lock_guard lock(mu_);
  return triggered_;
}

}  // namespace skiff

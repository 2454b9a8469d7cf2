#include "devices/post_code.h"

#include "base/log.h"

namespace skiff {

void PostCode::read(uint64_t, std::span<uint8_t> data) {
  for (auto& b : data) b = 0xff;
}

void PostCode::write(uint64_t, std::span<const uint8_t> data) {
  if (data.empty()) return;
  auto now = since_process_start();
  uint8_t value = data[0];
  std::lock_guard lock(mu_);
  ++total_;
  if (markers_.size() < kMaxMarkers) markers_.push_back(BootMarker{value, now});
  if (total_ <= kMaxLoggedMarkers) {
    LOG_INFO("guest reached boot marker {:#04x} after {:.3f} ms", value,
             std::chrono::duration<double, std::milli>(now).count());
  }
  if (total_ == kMaxLoggedMarkers) {
    LOG_INFO("port 0x80: {} boot markers logged; not logging further ones", total_);
  }
}

std::vector<BootMarker> PostCode::markers() const {
  std::lock_guard lock(mu_);
  return markers_;
}

uint64_t PostCode::total_writes() const {
  std::lock_guard lock(mu_);
  return total_;
}

}  // namespace skiff

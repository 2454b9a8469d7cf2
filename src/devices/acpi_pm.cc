#include "devices/acpi_pm.h"

#include "base/log.h"

namespace skiff {

namespace {
constexpr uint8_t kSlpEn = 0x20;     // §4.8.3.7 bit 5
constexpr uint8_t kSlpTypShift = 2;  // §4.8.3.7 bits 2-4
constexpr uint8_t kSlpTypMask = 0x07;
constexpr uint8_t kWakSts = 0x80;  // §4.8.3.8 bit 7
}  // namespace

void AcpiPm::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  for (auto& b : data) b = 0;
  // Sleep control and reset are write-only and read 0 (§4.8.3.6-7).
  if (offset == kSleepStatusOffset && !data.empty()) data[0] = sleep_status_;
}

void AcpiPm::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  uint8_t value = data[0];
  switch (offset) {
    case kSleepControlOffset:
      write_sleep_control(value);
      break;
    case kSleepStatusOffset: {
      std::lock_guard lock(mu_);
      sleep_status_ &= static_cast<uint8_t>(~(value & kWakSts));  // write 1 to clear
      break;
    }
    case kResetOffset:
      if (value == config_.reset_value) {
        LOG_INFO("acpi: guest wrote the reset register");
        events_.request_reset();
      } else {
        LOG_DEBUG("acpi: ignoring reset register write {:#04x}", value);
      }
      break;
    default:
      break;
  }
}

void AcpiPm::write_sleep_control(uint8_t value) {
  if (!(value & kSlpEn)) return;  // SLP_TYP without SLP_EN only stages a type
  uint8_t type = (value >> kSlpTypShift) & kSlpTypMask;
  if (type == config_.s5_sleep_type) {
    LOG_INFO("acpi: guest entered S5 (soft off)");
    events_.request_poweroff();
    return;
  }
  std::lock_guard lock(mu_);
  if (!warned_sleep_) {
    warned_sleep_ = true;
    LOG_WARN("acpi: guest asked for sleep type {} which skiff does not implement; ignoring", type);
  }
}

}  // namespace skiff

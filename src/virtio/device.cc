#include "virtio/device.h"

#include <chrono>
#include <mutex>

#include "base/log.h"

namespace skiff::virtio {

namespace {

// A guest that breaks a device, resets it and breaks it again in a loop
// must not flood the log: at most kBurst lines per kWindow across all
// devices, then one summary of what was dropped.
class FailureLogLimiter {
 public:
  void log(const std::string& device, const Error& why) {
    std::lock_guard lock(mu_);
    auto now = std::chrono::steady_clock::now();
    if (now - window_start_ > kWindow) {
      if (dropped_ > 0)
        LOG_WARN("virtio: {} more device failures were not logged in the last {} s", dropped_,
                 std::chrono::duration_cast<std::chrono::seconds>(kWindow).count());
      window_start_ = now;
      lines_ = 0;
      dropped_ = 0;
    }
    if (lines_ >= kBurst) {
      ++dropped_;
      return;
    }
    ++lines_;
    LOG_WARN("virtio {}: device needs reset: {}", device, why.what());
  }

 private:
  static constexpr auto kWindow = std::chrono::seconds(10);
  static constexpr int kBurst = 10;
  std::mutex mu_;
  std::chrono::steady_clock::time_point window_start_{};
  int lines_ = 0;
  uint64_t dropped_ = 0;
};

FailureLogLimiter& failure_log() {
  static FailureLogLimiter limiter;
  return limiter;
}

}  // namespace

VirtioDevice::VirtioDevice(uint32_t device_id, std::string name, uint64_t device_features,
                           uint16_t num_queues, uint16_t queue_max_size)
    : device_id_(device_id),
      name_(std::move(name)),
      device_features_(device_features | kCommonFeatures) {
  queues_.reserve(num_queues);
  for (uint16_t i = 0; i < num_queues; ++i) queues_.emplace_back(queue_max_size);
}

void VirtioDevice::set_driver_features(uint64_t features) {
  if (status() & kStatusFeaturesOk) return;
  driver_features_ = features;
}

void VirtioDevice::set_status(uint8_t value) {
  if (value == 0) {
    reset();
    return;
  }
  uint8_t old = status();
  // NEEDS_RESET is the device's bit; the driver cannot set or clear it.
  value = static_cast<uint8_t>((value & ~kStatusNeedsReset) | (old & kStatusNeedsReset));

  if ((value & kStatusFeaturesOk) && !(old & kStatusFeaturesOk)) {
    // §3.1.1 step 5-6: refuse features we did not offer and legacy drivers
    // (skiff devices are modern-only: VERSION_1 is required, §6.1).
    Result<> ok;
    if (uint64_t extra = driver_features_ & ~device_features_; extra != 0)
      ok = skiff::fail("driver accepted features {:#x} that were not offered", extra);
    else if (!negotiated(kFeatureVersion1))
      ok = skiff::fail("driver did not accept VIRTIO_F_VERSION_1");
    else
      ok = validate_features(driver_features_);
    if (!ok) {
      LOG_INFO("virtio {}: refusing FEATURES_OK: {}", name_, ok.error().what());
      value = static_cast<uint8_t>(value & ~kStatusFeaturesOk);
    }
  }
  bool start = (value & kStatusDriverOk) && !(old & kStatusDriverOk);
  if (start && !(value & kStatusFeaturesOk)) {
    // §3.1.1: DRIVER_OK only after FEATURES_OK; a driver that skips it
    // gets a device that does nothing.
    LOG_INFO("virtio {}: DRIVER_OK without FEATURES_OK ignored", name_);
    value = static_cast<uint8_t>(value & ~kStatusDriverOk);
    start = false;
  }
  status_.store(value, std::memory_order_release);
  if (start) (void)activate();  // a failure is recorded as NEEDS_RESET
}

Result<> VirtioDevice::activate() {
  auto r = [&]() -> Result<> {
    if (memory_ == nullptr) return skiff::fail("no guest memory attached");
    bool event_idx = negotiated(kFeatureEventIdx);
    bool indirect = negotiated(kFeatureIndirectDesc);
    for (size_t i = 0; i < queues_.size(); ++i) {
      if (!queues_[i].ready()) continue;
      auto q = queues_[i].activate(*memory_, event_idx, indirect);
      if (!q) return context(q.error(), fmt::format("queue {}", i));
    }
    return on_activate();
  }();
  if (!r) {
    mark_needs_reset(r.error());
    return r;
  }
  activated_ = true;
  if (event_cb_) event_cb_(DeviceEvent::kActivated, {});
  return {};
}

void VirtioDevice::reset() {
  // Drivers reset a device at probe before using it; only a reset of a
  // device that was running is an event worth reporting.
  bool was_live = (status() & kStatusDriverOk) != 0;
  on_reset();
  for (auto& q : queues_) q.reset();
  driver_features_ = 0;
  activated_ = false;
  status_.store(0, std::memory_order_release);
  if (was_live && event_cb_) event_cb_(DeviceEvent::kReset, {});
}

void VirtioDevice::process_queue(uint16_t index) {
  if (!activated_ || needs_reset()) return;
  if (index >= queues_.size()) return;  // the transport checks; be safe anyway
  Queue& q = queues_[index];
  if (!q.active()) return;
  if (auto r = handle_queue(index, q); !r)
    mark_needs_reset(context(r.error(), fmt::format("queue {}", index)).error());
}

void VirtioDevice::stop_queue(uint16_t index) {
  if (index >= queues_.size() || !queues_[index].active()) return;
  on_queue_stop(index, queues_[index]);
}

void VirtioDevice::offer_ring_reset() {
  if (supports_queue_reset()) device_features_ |= feature_bit(kFeatureRingReset);
}

bool VirtioDevice::reset_queue(uint16_t index) {
  if (index >= queues_.size() || !(status() & kStatusFeaturesOk) || !negotiated(kFeatureRingReset))
    return false;
  // §2.6.1.1.2: no more requests from this queue and no notifications for
  // it; in-flight requests complete or are dropped first so nothing lands in
  // the old rings after the driver sees the reset done.
  if (queues_[index].active()) on_queue_reset(index, queues_[index]);
  queues_[index].reset();
  return true;
}

Result<> VirtioDevice::enable_queue(uint16_t index) {
  if (index >= queues_.size()) return skiff::fail("{}: no queue {} to enable", name_, index);
  Queue& q = queues_[index];
  if (!activated_ || needs_reset() || q.active() || !q.ready()) return {};
  auto r = q.activate(*memory_, negotiated(kFeatureEventIdx), negotiated(kFeatureIndirectDesc));
  if (!r) {
    auto e = context(r.error(), fmt::format("queue {} re-enabled after reset", index));
    mark_needs_reset(e.error());
    return e;
  }
  return {};
}

void VirtioDevice::signal_used(uint16_t index) {
  if (index >= queues_.size()) return;
  if (queues_[index].needs_notification() && interrupt_)
    interrupt_(InterruptKind::kUsedBuffer, index);
}

void VirtioDevice::mark_needs_reset(const Error& why) {
  uint8_t old = status_.fetch_or(kStatusNeedsReset, std::memory_order_acq_rel);
  if (old & kStatusNeedsReset) return;  // already failed: one line per failure
  failure_log().log(name_, why);
  if (event_cb_) event_cb_(DeviceEvent::kNeedsReset, why.what());
  // §2.1.2: after setting DEVICE_NEEDS_RESET the device SHOULD send a
  // configuration change notification (only meaningful once DRIVER_OK).
  if ((old & kStatusDriverOk) && interrupt_) interrupt_(InterruptKind::kConfigChange, 0);
}

Result<> VirtioDevice::read_config(uint64_t offset, std::span<uint8_t> out) const {
  if (offset > config_.size() || out.size() > config_.size() - offset)
    return skiff::fail("config read [{:#x}, +{}) outside the {}-byte config space of {}", offset,
                       out.size(), config_.size(), name_);
  if (!out.empty()) std::memcpy(out.data(), config_.data() + offset, out.size());
  return {};
}

Result<> VirtioDevice::write_config(uint64_t offset, std::span<const uint8_t> in) {
  if (offset > config_.size() || in.size() > config_.size() - offset)
    return skiff::fail("config write [{:#x}, +{}) outside the {}-byte config space of {}", offset,
                       in.size(), config_.size(), name_);
  return on_config_write(offset, in);
}

Result<> VirtioDevice::on_config_write(uint64_t offset, std::span<const uint8_t> in) {
  return skiff::fail("config space of {} is read-only (write [{:#x}, +{}))", name_, offset,
                     in.size());
}

void VirtioDevice::update_config(std::span<const uint8_t> bytes, uint64_t offset) {
  if (offset > config_.size() || bytes.size() > config_.size() - offset) return;
  std::memcpy(config_.data() + offset, bytes.data(), bytes.size());
  config_generation_.fetch_add(1, std::memory_order_acq_rel);
  if ((status() & kStatusDriverOk) && interrupt_) interrupt_(InterruptKind::kConfigChange, 0);
}

}  // namespace skiff::virtio

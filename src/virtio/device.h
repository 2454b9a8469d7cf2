// VirtioDevice: what every virtio device shares, independent of transport
// (virtio 1.2 §2 "Basic Facilities of a Virtio Device"). Cloud Hypervisor's
// model: a small interface (on_activate / on_reset / handle_queue) over
// common state held here — device id, offered and negotiated features
// (§2.2, §3.1.1), device status (§2.1), config space (§2.5), queues and the
// "interrupt the driver" callback.
//
// The transport (virtio-pci in skiff, vhost-user in skiff-vhost) drives it:
// it sets the guest memory and the interrupt callback, writes features and
// status, configures the queues and calls process_queue(i) when the driver
// notifies queue i. The device never learns which transport it is behind.
//
// Hostile-guest rule (DESIGN.md): when a queue walk or a request breaks the
// rules, mark_needs_reset() sets DEVICE_NEEDS_RESET (§2.1.1: "the device has experienced
// an error from which it can't recover"), raises a config-change interrupt
// (§2.1.2: the device SHOULD notify the driver), logs one line and stops
// processing the device until the driver resets it.
//
// Threading: set_status / config access come from a vCPU (or the vhost-user
// socket) thread, process_queue from the device's I/O thread. The transport
// starts and stops the I/O thread around activate/reset; status and the
// failed flag are atomics so both sides read a coherent value.
//
// Seam for later: save()/restore() of the common state belong here and in
// each device's file pair (STYLE.md §6); not written yet.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "memory/guest_memory.h"
#include "virtio/queue.h"

namespace skiff::virtio {

// Device status bits (§2.1).
inline constexpr uint8_t kStatusAcknowledge = 1;
inline constexpr uint8_t kStatusDriver = 2;
inline constexpr uint8_t kStatusDriverOk = 4;
inline constexpr uint8_t kStatusFeaturesOk = 8;
inline constexpr uint8_t kStatusNeedsReset = 0x40;
inline constexpr uint8_t kStatusFailed = 0x80;

// Reserved feature bits every skiff device offers (§6).
inline constexpr unsigned kFeatureIndirectDesc = 28;  // VIRTIO_F_INDIRECT_DESC
inline constexpr unsigned kFeatureEventIdx = 29;      // VIRTIO_F_EVENT_IDX
inline constexpr unsigned kFeatureVersion1 = 32;      // VIRTIO_F_VERSION_1
// Per-queue reset (§2.6.1); offered only through a transport that implements
// it (see VirtioDevice::offer_ring_reset), so not in kCommonFeatures.
inline constexpr unsigned kFeatureRingReset = 40;  // VIRTIO_F_RING_RESET
constexpr uint64_t feature_bit(unsigned bit) {
  return 1ull << bit;
}
inline constexpr uint64_t kCommonFeatures = feature_bit(kFeatureIndirectDesc) |
                                            feature_bit(kFeatureEventIdx) |
                                            feature_bit(kFeatureVersion1);

enum class InterruptKind {
  kUsedBuffer,    // a queue has new used buffers (§2.7.10)
  kConfigChange,  // config space or DEVICE_NEEDS_RESET changed (§2.5, §2.1.2)
};
// queue is meaningful for kUsedBuffer only.
using InterruptCallback = std::function<void(InterruptKind kind, uint16_t queue)>;

// Lifecycle changes the vmm layer may want to report (the event monitor's
// "virtio-device" events, as Cloud Hypervisor emits them). The device
// neither knows nor cares who listens.
enum class DeviceEvent {
  kActivated,   // DRIVER_OK accepted, queues running
  kReset,       // a live device (DRIVER_OK was set) went back to power-on state
  kNeedsReset,  // the device failed and set DEVICE_NEEDS_RESET (detail: why)
};
using DeviceEventCallback = std::function<void(DeviceEvent event, const std::string& detail)>;

// An fd of a device's backend (an io_uring completion eventfd, a tap queue)
// that the transport's I/O thread watches, edge-triggered (EPOLLET), next to
// the queue notifications. When it becomes ready the transport calls
// process_queue(queue) on the thread that serves that queue, so a device
// handles "the backend has something" and "the driver made buffers
// available" in one place. The device drains the fd itself. `events` says
// what to watch for: EPOLLIN (the backend has something), or EPOLLOUT (a
// backend that was full can take more again).
struct BackendEvent {
  int fd;
  uint16_t queue;
  uint32_t events = EPOLLIN;
};

class VirtioDevice {
 public:
  // `device_features` are the device-specific bits; kCommonFeatures are
  // added. Each of the `num_queues` queues offers `queue_max_size` entries.
  VirtioDevice(uint32_t device_id, std::string name, uint64_t device_features, uint16_t num_queues,
               uint16_t queue_max_size);
  virtual ~VirtioDevice() = default;
  VirtioDevice(const VirtioDevice&) = delete;
  VirtioDevice& operator=(const VirtioDevice&) = delete;

  [[nodiscard]] uint32_t device_id() const { return device_id_; }
  [[nodiscard]] const std::string& name() const { return name_; }

  // --- wiring by the transport
  // `mem` must stay valid until reset() or destruction.
  void set_memory(const GuestMemory* mem) { memory_ = mem; }
  void set_interrupt(InterruptCallback cb) { interrupt_ = std::move(cb); }
  // Set before the device is used (not synchronised with the callers:
  // vCPU threads for reset, the I/O thread for NEEDS_RESET).
  void set_event_callback(DeviceEventCallback cb) { event_cb_ = std::move(cb); }

  // --- feature negotiation (§2.2, §3.1.1 steps 4-6)
  [[nodiscard]] uint64_t device_features() const { return device_features_; }
  [[nodiscard]] uint64_t driver_features() const { return driver_features_; }
  // Ignored once FEATURES_OK is set (§2.2.2: the driver MUST NOT change
  // features after that). Unoffered bits are refused at FEATURES_OK.
  void set_driver_features(uint64_t features);
  [[nodiscard]] bool negotiated(unsigned bit) const {
    return (driver_features_ & feature_bit(bit)) != 0;
  }

  // --- device status (§2.1)
  [[nodiscard]] uint8_t status() const { return status_.load(std::memory_order_acquire); }
  // The driver's write: 0 resets; FEATURES_OK is kept only if the driver's
  // features are acceptable (the driver re-reads it, §3.1.1 step 6);
  // DRIVER_OK activates the device.
  void set_status(uint8_t status);
  [[nodiscard]] bool needs_reset() const { return (status() & kStatusNeedsReset) != 0; }

  // --- config space (§2.5), by byte offset
  [[nodiscard]] size_t config_size() const { return config_.size(); }
  [[nodiscard]] Result<> read_config(uint64_t offset, std::span<uint8_t> out) const;
  [[nodiscard]] Result<> write_config(uint64_t offset, std::span<const uint8_t> in);
  // Bumped on every device-side config change (§4.1.4.3 config_generation).
  [[nodiscard]] uint32_t config_generation() const {
    return config_generation_.load(std::memory_order_acquire);
  }

  // --- queues
  [[nodiscard]] uint16_t num_queues() const { return static_cast<uint16_t>(queues_.size()); }
  [[nodiscard]] Queue* queue(uint16_t index) {
    return index < queues_.size() ? &queues_[index] : nullptr;
  }

  // Checks every ready queue against guest memory and starts the device.
  // Called on DRIVER_OK, or directly by vhost-user when the rings start.
  // A failure leaves the device in NEEDS_RESET and is also returned.
  [[nodiscard]] Result<> activate();
  [[nodiscard]] bool activated() const { return activated_; }
  // Back to the power-on state (§2.4): status 0, no features, queues reset.
  void reset();

  // The backend fds to watch (see BackendEvent). Fixed from construction to
  // destruction: transports ask once, when they start their threads.
  [[nodiscard]] virtual std::vector<BackendEvent> backend_events() const { return {}; }

  // The driver notified queue `index` (or one of its backend events fired):
  // process what it made available.
  // Does nothing while the device is not activated or needs a reset.
  void process_queue(uint16_t index);

  // The transport is about to stop queue `index` and read its ring position
  // (vhost-user GET_VRING_BASE, a memory table change): the device finishes
  // what it has in flight on that queue (used ring updated) so the position
  // is final and no backend completion touches guest memory afterwards.
  // Called with the queue's thread stopped, before Queue::reset().
  void stop_queue(uint16_t index);

  // The transport enabled or disabled queue `index` (vhost-user
  // SET_VRING_ENABLE, and each ring's state when it starts): a disabled
  // queue is not processed, and a device whose backend has a queue of its
  // own per virtqueue follows (virtio-net detaches its tap queue).
  // Transports without per-queue enabling (virtio-pci) never call it.
  void set_queue_enabled(uint16_t index, bool enabled) {
    if (index < queues_.size()) on_queue_enabled(index, enabled);
  }

  // --- virtqueue reset (VIRTIO_F_RING_RESET, §2.6.1)
  // A transport with a per-queue reset (virtio-pci's queue_reset, §4.1.4.3)
  // calls this before the driver can read features: the device then offers
  // VIRTIO_F_RING_RESET if supports_queue_reset() says it can lose one
  // queue's state on its own. vhost-user has no such message: not offered.
  void offer_ring_reset();
  // §2.6.1.1: the driver reset queue `index`. The device finishes or drops
  // what is in flight on it (on_queue_reset), then returns it to its
  // power-on state (not ready, not active, size = max). Refused (false) unless RING_RESET was
  // negotiated and FEATURES_OK set, or for a queue that does not exist.
  // Same threading as process_queue (the transport serialises the two).
  [[nodiscard]] bool reset_queue(uint16_t index);
  // §2.6.1.2: the driver re-enabled queue `index` (set ready) while the
  // device runs: its rings are checked and it starts. A bad ring puts the
  // device in NEEDS_RESET (returned as well). Does nothing before
  // activation (activate() starts every ready queue) or once failed.
  [[nodiscard]] Result<> enable_queue(uint16_t index);

 protected:
  // Whether this device can reset one queue while the others run
  // (offer_ring_reset). Say yes only if on_queue_stop() leaves no state
  // that refers to the queue's old descriptors.
  [[nodiscard]] virtual bool supports_queue_reset() const { return false; }
  // Device-specific hooks.
  [[nodiscard]] virtual Result<> on_activate() { return {}; }
  // Called before the queues are reset; also must cancel or wait for any
  // backend I/O in flight (nothing may write guest memory after reset()).
  virtual void on_reset() {}
  // See stop_queue(); `queue` is still active.
  virtual void on_queue_stop(uint16_t /*index*/, Queue& /*queue*/) {}
  // See reset_queue(); `queue` is still active. Like on_reset() for one
  // queue: nothing may touch the old rings or buffers afterwards, and the
  // driver takes back what was in flight (§2.6.1.1.2), so a device may
  // cancel it instead of completing it. Default: on_queue_stop().
  virtual void on_queue_reset(uint16_t index, Queue& queue) { on_queue_stop(index, queue); }
  // See set_queue_enabled().
  virtual void on_queue_enabled(uint16_t /*index*/, bool /*enabled*/) {}
  // Handle the available buffers of queue `index`. An error means the
  // driver broke the rules: the device goes to NEEDS_RESET.
  [[nodiscard]] virtual Result<> handle_queue(uint16_t index, Queue& queue) = 0;
  // Accepts or refuses a driver's feature set beyond the common checks.
  [[nodiscard]] virtual Result<> validate_features(uint64_t /*features*/) const { return {}; }
  // A driver write into config space (bounds already checked). Default:
  // the config space is read-only.
  [[nodiscard]] virtual Result<> on_config_write(uint64_t offset, std::span<const uint8_t> in);

  // For devices: fill or change the config bytes. After activation use
  // update_config() so the driver hears about it.
  std::vector<uint8_t>& config_bytes() { return config_; }
  void update_config(std::span<const uint8_t> bytes, uint64_t offset);

  // Raise a used-buffer interrupt for `index` if the driver wants one.
  void signal_used(uint16_t index);

  // The hostile-guest path: NEEDS_RESET, config interrupt, one log line.
  void mark_needs_reset(const Error& why);

  [[nodiscard]] const GuestMemory* memory() const { return memory_; }

 private:
  uint32_t device_id_;
  std::string name_;
  uint64_t device_features_;
  uint64_t driver_features_ = 0;
  std::atomic<uint8_t> status_{0};
  std::atomic<uint32_t> config_generation_{0};
  std::atomic<bool> activated_{false};
  std::vector<uint8_t> config_;
  std::vector<Queue> queues_;
  const GuestMemory* memory_ = nullptr;
  InterruptCallback interrupt_;
  DeviceEventCallback event_cb_;
};

}  // namespace skiff::virtio

// VhostUserBlock: a virtio-blk device whose requests are served by an
// external vhost-user-blk back end (qemu-storage-daemon, skiff-vhost blk,
// any other), `skiff --disk vhost_user=on,socket=PATH`. skiff keeps the
// transport (virtio-pci: feature and status registers, queue setup, MSI-X)
// and hands the rings themselves to the back end, which reads and writes
// guest memory directly through the shared memory table.
//
// What the driver sees is the back end's device:
//   - features: the back end's (GET_FEATURES) masked to the virtio-blk
//     bits skiff knows (virtio 1.2 §5.2.3) and the transport bits skiff's
//     virtio-pci supports (VERSION_1, EVENT_IDX, INDIRECT_DESC, which the
//     back end must offer); CONFIG_WCE is left out (config is read-only
//     here) and so is everything that needs a config field past
//     write_zeroes_may_unmap (SECURE_ERASE, ZONED);
//   - config: GET_CONFIG at creation and again at every device reset
//     ("the front end may cache the contents"); without the back-end
//     request channel a capacity change reaches the guest at its next reset;
//     num_queues is rewritten to the queues skiff actually exposes;
//   - queues: up to GET_QUEUE_NUM (MQ), each up to queue_size entries.
//
// Life cycle: DRIVER_OK (activate) sends SET_FEATURES, the memory table
// and every ready ring (num, addresses as skiff's own user addresses,
// base, call, err, kick, enable); a device reset disables and stops every
// started ring with GET_VRING_BASE and re-reads the config.
//
// Notifications (simplest correct design, one extra hop each way, relayed
// by virtio/ring_relay.h as for the vhost-net device):
//   guest notify -> ioeventfd -> skiff's device thread -> handle_queue()
//     writes this ring's kick eventfd -> back end;
//   back end call eventfd -> skiff's device thread (a BackendEvent) ->
//     handle_queue() drains it and raises the MSI-X vector.
// The back end has already applied the driver's interrupt suppression
// (§2.7.10) before it writes the call fd, so every call is forwarded. The
// later optimisation is to give the back end the ioeventfd and the irqfd
// directly (what QEMU does), which removes skiff's thread from the path.
//
// A back end that dies or fails: its socket hang-up (watched on queue 0's
// thread) or a write to a ring's err fd puts the device into NEEDS_RESET
// with one log line; skiff keeps running. The driver's device reset then
// reconnects to the same socket if a back end with the same features
// listens there again (a restarted qemu-storage-daemon), so re-initialising
// the device works; otherwise activation fails again (NEEDS_RESET). After
// a reconnection the new socket is not in the transport's epoll set (it is
// fixed at start), so a second death is noticed at the next notification
// or reset instead of at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "vhost_user/frontend.h"
#include "virtio/device.h"
#include "virtio/ring_relay.h"

namespace skiff::vhost_user {

struct VhostUserBlkOptions {
  std::string socket;
  // 0: min(default_queues, what the back end serves); otherwise exactly
  // this many, an error if the back end serves fewer.
  uint16_t num_queues = 0;
  uint16_t default_queues = 1;
  uint16_t queue_size = 256;
  std::chrono::milliseconds timeout = VhostUserFrontend::kDefaultTimeout;
};

// The config space bytes skiff exposes: struct virtio_blk_config up to and
// including unused1 (virtio 1.2 §5.2.4, without the secure-erase fields).
inline constexpr uint32_t kVhostBlkConfigBytes = 60;

class VhostUserBlock final : public virtio::VirtioDevice {
 public:
  // Connects and negotiates; every failure names the socket.
  [[nodiscard]] static Result<std::unique_ptr<VhostUserBlock>> create(
      const VhostUserBlkOptions& options);
  ~VhostUserBlock() override;

  // Call and err eventfds (queue i) and the socket (queue 0, for a hang-up).
  [[nodiscard]] std::vector<virtio::BackendEvent> backend_events() const override;

  // The back end's own feature bits (before skiff's mask), for tests and logs.
  [[nodiscard]] uint64_t backend_features() const { return backend_features_; }

 protected:
  [[nodiscard]] Result<> on_activate() override;
  void on_reset() override;
  [[nodiscard]] Result<> handle_queue(uint16_t index, virtio::Queue& queue) override;

 private:
  struct Ring {
    virtio::RingRelay relay;  // kick / call / err eventfds and the relaying
    // The back end was given the ring (SET_VRING_KICK): stopping it takes
    // GET_VRING_BASE. Set before SET_VRING_ENABLE, the relay after it.
    bool started = false;
  };
  // What a back end offers, read by create() and again by reconnect().
  struct Negotiated {
    uint64_t features;
    bool protocol;  // VHOST_USER_F_PROTOCOL_FEATURES offered (and so used)
    uint16_t max_queues;
  };
  [[nodiscard]] static Result<Negotiated> negotiate(VhostUserFrontend& conn);
  // A new connection to the same socket after the back end hung up.
  [[nodiscard]] Result<> reconnect();
  VhostUserBlock(std::unique_ptr<VhostUserFrontend> conn, uint64_t backend_features,
                 uint64_t offered, bool protocol_features, uint16_t num_queues,
                 uint16_t queue_size);
  [[nodiscard]] Result<> start_ring(uint16_t index, virtio::Queue& q);
  [[nodiscard]] Result<> fetch_config();
  void stop_rings();

  std::unique_ptr<VhostUserFrontend> conn_;
  uint64_t backend_features_;
  bool protocol_features_;  // VHOST_USER_F_PROTOCOL_FEATURES negotiated
  std::chrono::milliseconds timeout_ = VhostUserFrontend::kDefaultTimeout;
  std::vector<Ring> rings_;
};

}  // namespace skiff::vhost_user

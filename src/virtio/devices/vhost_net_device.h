// VhostNetDevice: virtio-net (virtio 1.2 §5.1) whose receive and transmit
// rings are served by the kernel's vhost-net (`skiff --net ...,vhost=on`),
// the kernel data path QEMU uses with `-netdev tap,vhost=on`. skiff keeps
// the transport (virtio-pci registers, queue setup, MSI-X), the config
// space and the control queue; each queue pair's two rings go to one
// /dev/vhost-net instance (net/vhost_net.h) over that pair's tap queue. The
// model is the vhost-user front end (vhost_user/frontend_blk.h): the same
// hand-over, with ioctls instead of socket messages.
//
// What the driver sees:
//   - features: MAC, STATUS (link up), CTRL_VQ, CTRL_MAC_ADDR,
//     CTRL_GUEST_OFFLOADS, MQ with more than one pair; MRG_RXBUF if the
//     kernel offers it; CSUM / GUEST_CSUM and the TSO / ECN / UFO pairs the
//     tap accepts (the tap does the offload work, vhost passes the 12-byte
//     header through). Not offered: CTRL_RX, CTRL_RX_EXTRA, CTRL_VLAN — the
//     kernel delivers every frame the tap receives and skiff never sees
//     them, so a receive filter could not be applied; the driver gets what
//     a promiscuous device delivers (drivers must cope with that anyway).
//     The kernel must offer VERSION_1, EVENT_IDX and INDIRECT_DESC, which
//     skiff's transports always offer (every vhost-net since 4.x does);
//   - control queue (skiff's thread, served as VirtioNet serves it:
//     net_ctrl_queue.h):
//     VQ_PAIRS_SET attaches / detaches tap queues (TUNSETQUEUE) as QEMU
//     does, so the kernel steers no frames to pairs the driver does not
//     use; GUEST_OFFLOADS_SET becomes TUNSETOFFLOAD; MAC ADDR_SET shows in
//     the config space.
//
// Life cycle: DRIVER_OK (activate) gives each instance SET_FEATURES (the
// negotiated MRG_RXBUF / VERSION_1 / EVENT_IDX / INDIRECT_DESC), the memory
// table (guest RAM regions as skiff's own user addresses: private RAM
// works, nothing is shared with another process), and for every ready ring
// num, addresses (skiff's user addresses), base (the queue's next_avail),
// call, err and kick eventfds, then NET_SET_BACKEND with the pair's tap
// queue. A device reset detaches every backend (the kernel flushes its
// worker: no guest memory is touched afterwards) and reads GET_VRING_BASE.
//
// Notifications take one extra hop each way through the device thread
// (virtio/ring_relay.h, as for vhost-user; giving the kernel the ioeventfd
// and irqfd directly is the later optimisation).
//
// Hostile driver: ring placement is checked by Queue::activate like for
// every device; descriptors are the kernel's to check (vhost translates
// each through the memory table and refuses anything outside it). When it
// does, it writes the ring's err eventfd: the device goes NEEDS_RESET with
// one log line. Control requests are checked as in VirtioNet
// (net_ctrl_queue.h).
//
// Not possible on this path: rate limiting (the frames never pass through
// skiff; the vmm refuses vhost=on with a rate limiter), skiff's per-queue
// packet counters, receive filtering (above). Not implemented: dirty
// logging for migration (VHOST_F_LOG_ALL), RING_RESET, save/restore.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "net/mac_address.h"
#include "net/tap.h"
#include "net/vhost_net.h"
#include "virtio/device.h"
#include "virtio/devices/net_ctrl.h"
#include "virtio/devices/net_ctrl_queue.h"
#include "virtio/ring_relay.h"

namespace skiff::virtio {

struct VhostNetOptions {
  net::MacAddress mac;
  uint16_t queue_size = 256;
  std::string vhost_path = net::kVhostNetPath;  // tests point it elsewhere
};

class VhostNetDevice final : public VirtioDevice, private NetCtrlTarget {
 public:
  // One vhost-net instance per tap queue pair. Fails (naming the path) if
  // vhost-net cannot be opened or lacks a feature skiff needs; the caller
  // then falls back to VirtioNet.
  [[nodiscard]] static Result<std::unique_ptr<VhostNetDevice>> create(std::unique_ptr<net::Tap> tap,
                                                                      const VhostNetOptions& o);
  ~VhostNetDevice() override;

  [[nodiscard]] uint16_t max_queue_pairs() const { return pairs_; }
  [[nodiscard]] uint16_t active_queue_pairs() const { return active_pairs_; }
  // What the kernel offered (VHOST_GET_FEATURES), for logs and tests.
  [[nodiscard]] uint64_t vhost_features() const { return vhost_features_; }
  // The control queue's index for the negotiated features.
  [[nodiscard]] int ctrl_queue_index() const;
  // Where the kernel stopped ring `index` at the last reset (GET_VRING_BASE),
  // if it was running then.
  [[nodiscard]] std::optional<uint16_t> stopped_ring_base(uint16_t index) const;
  [[nodiscard]] net::Tap& tap() { return *tap_; }

  // Call and err eventfds of every ring.
  [[nodiscard]] std::vector<BackendEvent> backend_events() const override;

 protected:
  [[nodiscard]] Result<> on_activate() override;
  void on_reset() override;
  [[nodiscard]] Result<> handle_queue(uint16_t index, Queue& queue) override;
  [[nodiscard]] Result<> validate_features(uint64_t features) const override;

 private:
  struct Ring {
    RingRelay relay;
    std::optional<uint16_t> stopped_base;  // GET_VRING_BASE at the last stop
  };

  VhostNetDevice(std::unique_ptr<net::Tap> tap, std::vector<net::VhostNet> vhost,
                 uint64_t vhost_features, uint64_t offered, const VhostNetOptions& o);
  [[nodiscard]] Result<> start_ring(uint16_t index, Queue& q);
  void stop_rings();
  [[nodiscard]] Result<> apply_queue_pairs(uint16_t pairs);
  [[nodiscard]] Result<> handle_ctrl(uint16_t index, Queue& queue);
  // NetCtrlTarget: the control queue's effects (net_ctrl_queue.h).
  [[nodiscard]] Result<> set_ctrl_queue_pairs(uint16_t pairs) override;
  [[nodiscard]] Result<> set_ctrl_guest_offloads(uint64_t features) override;
  void set_ctrl_mac(const net::MacAddress& mac) override;
  [[nodiscard]] std::unique_lock<std::mutex> lock_rx_filter() override;

  std::unique_ptr<net::Tap> tap_;
  std::vector<net::VhostNet> vhost_;  // one per queue pair
  uint64_t vhost_features_;
  net::MacAddress mac_;
  uint16_t pairs_;
  uint16_t active_pairs_ = 1;
  std::vector<Ring> rings_;  // 2 per pair: rx at 2p, tx at 2p + 1
  DescriptorChain ctrl_chain_;
  RxFilter filter_;  // what execute_ctrl_command programs; not applied (see above)
};

}  // namespace skiff::virtio

// The virtio-net control queue (virtio 1.2 §5.1.6.5) as both of skiff's
// virtio-net devices serve it: VirtioNet (net.h) and VhostNetDevice
// (vhost_net_device.h). The framing checks, execute_ctrl_command()
// (net_ctrl.h), the order of the effects and the ack are the same for both;
// what an effect does (which backend is told, who else reads the filter) is
// the device's, behind NetCtrlTarget.
#pragma once

#include <cstdint>
#include <mutex>
#include <string_view>

#include "base/result.h"
#include "net/mac_address.h"
#include "virtio/devices/net_ctrl.h"
#include "virtio/queue.h"

namespace skiff::virtio {

// What a device does for a command execute_ctrl_command() accepted.
class NetCtrlTarget {
 public:
  // VQ_PAIRS_SET (§5.1.6.5.5): the driver now uses `pairs` queue pairs. An
  // error answers VIRTIO_NET_ERR and leaves the filter as it was.
  [[nodiscard]] virtual Result<> set_ctrl_queue_pairs(uint16_t pairs) = 0;
  // GUEST_OFFLOADS_SET (§5.1.6.5.6.1): the GUEST_* feature bits the backend
  // may deliver from now on. An error answers VIRTIO_NET_ERR.
  [[nodiscard]] virtual Result<> set_ctrl_guest_offloads(uint64_t features) = 0;
  // MAC ADDR_SET (§5.1.6.5.2): the address shows in the config space.
  virtual void set_ctrl_mac(const net::MacAddress& mac) = 0;
  // Held while a command reads and changes the filter and its effects are
  // applied: a device whose other threads read the filter locks it here.
  [[nodiscard]] virtual std::unique_lock<std::mutex> lock_rx_filter() = 0;
  // Called with that lock held after an accepted command changed the filter.
  virtual void rx_filter_changed() {}

 protected:
  ~NetCtrlTarget() = default;
};

// Answers every available request on the control queue: a request needs
// its 2-byte class and command readable and a writable ack byte, else the
// device NEEDS_RESET (the error is returned). `features` are the
// negotiated ones, `max_pairs` the device's queue pairs, `filter` the
// receive filter the commands program (changed only when the ack is OK),
// `log_name` starts the device's log lines. True if a request was used (the
// caller signals the queue).
[[nodiscard]] Result<bool> serve_net_ctrl_queue(Queue& queue, DescriptorChain& chain,
                                                uint64_t features, uint16_t max_pairs,
                                                RxFilter& filter, NetCtrlTarget& target,
                                                std::string_view log_name);

}  // namespace skiff::virtio

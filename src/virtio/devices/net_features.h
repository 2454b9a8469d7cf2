// What skiff's two virtio-net devices share about features and config
// space: VirtioNet (skiff's own data path, net.h) and VhostNetDevice (the
// kernel's vhost-net, vhost_net_device.h) offer the same offload features
// for what the tap supports, check the same §5.1.3.1 dependencies, and lay
// out the same config space (§5.1.4).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/result.h"
#include "net/mac_address.h"

namespace skiff::virtio {

// Config space (§5.1.4): mac[6], le16 status, le16 max_virtqueue_pairs,
// le16 mtu (meaningful only with VIRTIO_NET_F_MTU, which is not offered).
inline constexpr size_t kNetConfigMac = 0;
inline constexpr size_t kNetConfigStatus = 6;
inline constexpr size_t kNetConfigMaxPairs = 8;
inline constexpr size_t kNetConfigMtu = 10;
inline constexpr size_t kNetConfigBytes = 12;

// The config bytes of a device with `mac`, link up and `max_pairs` pairs.
[[nodiscard]] std::vector<uint8_t> net_config_bytes(const net::MacAddress& mac, uint16_t max_pairs);

// The HOST_* / GUEST_* feature pairs (and CSUM / GUEST_CSUM) for the
// backend's NetOffload bits (net_backend.h): the tap does that work.
[[nodiscard]] uint64_t net_offload_features(unsigned offloads);

// NetOffload bits for the negotiated GUEST_* features: what the tap may
// deliver (TUNSETOFFLOAD).
[[nodiscard]] unsigned net_guest_offloads(uint64_t features);

// §5.1.3.1 feature dependencies. MQ needs CTRL_VQ only where the device
// has the control queue (`mq_needs_ctrl_vq`); a vhost-user front end keeps
// it and its MQ command to itself.
[[nodiscard]] Result<> check_net_feature_dependencies(uint64_t features, bool mq_needs_ctrl_vq);

}  // namespace skiff::virtio

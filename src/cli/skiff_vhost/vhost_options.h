// skiff-vhost's --disk value, parsed like skiff's own --disk (Cloud
// Hypervisor style "key=value,..."), so the same options mean the same
// thing in both programs.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "net/mac_address.h"
#include "virtio/devices/blk.h"
#include "virtio/devices/net.h"

namespace skiff::cli {

struct VhostDiskOptions {
  std::string path;
  std::string format;   // "" = probe, "raw", "qcow2"
  bool direct = false;  // O_DIRECT (raw images only)
  virtio::BlkOptions blk;
};

// path=P[,readonly=on][,num_queues=N][,queue_size=N][,direct=on][,serial=S][,format=F].
// Errors name the bad key and value.
[[nodiscard]] Result<VhostDiskOptions> parse_vhost_disk(std::string_view value);

// skiff-vhost net: --tap NAME, --num-queues N (virtqueues: 2 per queue pair,
// Cloud Hypervisor's num_queues), --mac M, --queue-size N.
struct VhostNetOptions {
  std::string tap;
  uint16_t queue_pairs = 1;
  virtio::NetOptions net;  // control_queue off: the front end keeps it
};
// `mac` empty: a random locally administered address. Errors name the value.
[[nodiscard]] Result<VhostNetOptions> parse_vhost_net(std::string_view tap, uint64_t num_queues,
                                                      std::string_view mac, uint64_t queue_size);

}  // namespace skiff::cli

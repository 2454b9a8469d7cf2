// --net (virtio-net on PCI), Cloud Hypervisor's spelling:
//   tap=NAME | fd=[N,...]   the backend: a tap by name, or open tap queue fds
//   mac=52:54:00:xx:xx:xx   the guest's MAC (unicast); default random, local
//   num_queues=N            virtqueues, 2 x queue pairs; default a pair per vCPU
//   queue_size=N            power of 2, default 256
//   vhost=on                /dev/vhost-net data path where available
//   id=ID
//   bw_size=BYTES,bw_one_time_burst=BYTES,bw_refill_time=MS
//   ops_size=N,ops_one_time_burst=N,ops_refill_time=MS
//                           token buckets (bytes and packets), each direction
#pragma once

#include <cstdint>
#include <string_view>

#include "base/result.h"
#include "vmm/config.h"

namespace skiff::cli {

inline constexpr uint16_t kMaxNetQueuePairs = 64;  // as --disk's queues: vCPUs we can serve

[[nodiscard]] Result<NetConfig> parse_net(std::string_view value);

}  // namespace skiff::cli

// skiff-vhost's --disk value, parsed like skiff's own --disk (Cloud
// Hypervisor style "key=value,..."), so the same options mean the same
// thing in both programs.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "virtio/devices/blk.h"

namespace skiff::cli {

struct VhostDiskOptions {
  std::string path;
  std::string format;  // "" = probe, "raw", "qcow2"
  virtio::BlkOptions blk;
};

// path=P[,readonly=on][,num_queues=N][,queue_size=N][,direct=on][,serial=S][,format=F].
// Errors name the bad key and value.
[[nodiscard]] Result<VhostDiskOptions> parse_vhost_disk(std::string_view value);

}  // namespace skiff::cli

// One virtio-net device per --net (NetConfig): the tap backend opened by
// name or adopted from inherited fds, the MAC, the number of queue pairs,
// and what vhost=on does on this host. PciDevices puts the result on PCI
// with one I/O thread (net0, net1, ...) that also watches the tap queues
// (virtio::BackendEvent).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "base/result.h"
#include "vmm/config.h"

namespace skiff {

namespace virtio {
class VirtioDevice;
class VirtioNet;
}  // namespace virtio

// Queue pairs for `c`: num_queues / 2, or one per boot vCPU (at most 64,
// as for --disk) when num_queues is not given.
[[nodiscard]] uint16_t net_queue_pairs(const NetConfig& c, uint32_t boot_cpus);

// The line skiff logs for vhost=on: skiff has no vhost-net data path yet,
// so whether or not `vhost_net_path` exists (and why not), the device runs
// on skiff's own data path, and the message says so.
[[nodiscard]] std::string vhost_net_fallback_message(
    const std::string& vhost_net_path = "/dev/vhost-net");

// Opens the backend and builds the device. Errors name the --net value
// (tap name or fds) and say what to do.
[[nodiscard]] Result<std::unique_ptr<virtio::VirtioNet>> make_virtio_net(const NetConfig& c,
                                                                         uint32_t boot_cpus);

// "--net tap=NAME" or "--net fd=[3,4]": how messages name a device.
[[nodiscard]] std::string describe_net(const NetConfig& c);

// rx/tx packets, bytes, drops and errors summed over the queue pairs, for
// vm.counters; nothing if `dev` is not a VirtioNet.
void add_net_counters(virtio::VirtioDevice& dev, std::map<std::string, uint64_t>& out);

}  // namespace skiff

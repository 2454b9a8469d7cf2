// One virtio-net device per --net (NetConfig): the tap backend opened by
// name or adopted from inherited fds, the MAC, the number of queue pairs,
// and with vhost=on the kernel's vhost-net data path where this host has
// it. PciDevices puts the result on PCI with one I/O thread (net0, net1,
// ...) that also watches the tap queues or vhost-net's call eventfds
// (virtio::BackendEvent).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "base/result.h"
#include "memory/guest_memory.h"
#include "vmm/config.h"

namespace skiff {

namespace virtio {
class VirtioDevice;
class VirtioNet;
}  // namespace virtio

// Queue pairs for `c`: num_queues / 2, or one per boot vCPU (at most 64,
// as for --disk) when num_queues is not given.
[[nodiscard]] uint16_t net_queue_pairs(const NetConfig& c, uint32_t boot_cpus);

// The line skiff logs when vhost=on cannot have the kernel data path
// (`why`: the reason, e.g. /dev/vhost-net missing): the device runs on
// skiff's own data path, and the message says so.
[[nodiscard]] std::string vhost_net_fallback_message(const std::string& why);

// Opens the backend and builds skiff's own virtio-net (VirtioNet). Errors
// name the --net value (tap name or fds) and say what to do.
[[nodiscard]] Result<std::unique_ptr<virtio::VirtioNet>> make_virtio_net(const NetConfig& c,
                                                                         uint32_t boot_cpus);

// The device for `c`: with vhost=on the kernel's vhost-net serves the rings
// (virtio/devices/vhost_net_device.h) when `vhost_net_path` opens and
// `mem` fits its memory table; otherwise the reason is logged with
// vhost_net_fallback_message and VirtioNet is built. vhost=on with a rate
// limit is an error (the kernel path cannot be limited).
[[nodiscard]] Result<std::unique_ptr<virtio::VirtioDevice>> make_net_device(
    const NetConfig& c, uint32_t boot_cpus, const GuestMemory& mem,
    const std::string& vhost_net_path = "/dev/vhost-net");

// "--net tap=NAME" or "--net fd=[3,4]": how messages name a device.
[[nodiscard]] std::string describe_net(const NetConfig& c);

// rx/tx packets, bytes, drops and errors summed over the queue pairs, for
// vm.counters; nothing if `dev` is not a VirtioNet.
void add_net_counters(virtio::VirtioDevice& dev, std::map<std::string, uint64_t>& out);

}  // namespace skiff

#include "vmm/net_devices.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/fd.h"
#include "base/log.h"
#include "net/mac_address.h"
#include "net/tap.h"
#include "virtio/devices/net.h"

namespace skiff {

uint16_t net_queue_pairs(const NetConfig& c, uint32_t boot_cpus) {
  if (c.num_queues != 0) return static_cast<uint16_t>(c.num_queues / 2);
  if (!c.fds.empty()) return static_cast<uint16_t>(c.fds.size());
  return static_cast<uint16_t>(std::clamp<uint32_t>(boot_cpus, 1, 64));
}

std::string describe_net(const NetConfig& c) {
  if (!c.tap.empty()) return fmt::format("--net tap={}", c.tap);
  return fmt::format("--net fd=[{}]", fmt::join(c.fds, ","));
}

std::string vhost_net_fallback_message(const std::string& vhost_net_path) {
  std::string why;
  if (::access(vhost_net_path.c_str(), R_OK | W_OK) == 0)
    why = fmt::format("{} is present, but skiff has no vhost-net data path yet", vhost_net_path);
  else if (errno == ENOENT)
    why = fmt::format(
        "{} does not exist on this host (load the vhost_net module: modprobe "
        "vhost_net)",
        vhost_net_path);
  else
    why = fmt::format("{} is not usable: {}", vhost_net_path, std::strerror(errno));
  return fmt::format("vhost=on: {}; using skiff's own virtio-net data path", why);
}

Result<std::unique_ptr<virtio::VirtioNet>> make_virtio_net(const NetConfig& c, uint32_t boot_cpus) {
  std::string what = describe_net(c);
  if (c.vhost) LOG_WARN("{}: {}", what, vhost_net_fallback_message());
  uint16_t pairs = net_queue_pairs(c, boot_cpus);
  std::unique_ptr<net::Tap> tap;
  if (!c.tap.empty()) {
    auto t = net::Tap::open(c.tap, pairs);
    if (!t) return context(t.error(), what);
    tap = std::move(*t);
  } else {
    if (pairs != c.fds.size())
      return fail("{}: {} fds for {} queue pairs (give one fd per pair)", what, c.fds.size(),
                  pairs);
    // Duplicates: the inherited fds stay open for the next VM built from
    // the same config (API vm.boot after vm.shutdown).
    std::vector<Fd> fds;
    for (int fd : c.fds) {
      int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
      if (dup < 0) return fail_errno("{}: fd {} is not open", what, fd);
      fds.emplace_back(dup);
    }
    auto t = net::Tap::adopt(std::move(fds));
    if (!t) return context(t.error(), what);
    tap = std::move(*t);
  }
  virtio::NetOptions opts;
  if (!c.mac.empty()) {
    auto mac = net::MacAddress::parse(c.mac);
    if (!mac) return context(mac.error(), what);
    opts.mac = *mac;
  } else {
    opts.mac = net::MacAddress::random_local();
  }
  opts.queue_size = c.queue_size;
  // Each direction of each pair gets its own buckets (Cloud Hypervisor's
  // rate_limiter_config semantics); the device arms a timer, never drops.
  opts.rate_limiter = c.rate_limiter;
  std::string tap_name = tap->name();
  auto dev = virtio::VirtioNet::create(std::move(tap), opts);
  if (!dev) return context(dev.error(), what);
  LOG_INFO("{}: tap {}, MAC {}, {} queue pair(s) of {} entries{}", what, tap_name,
           opts.mac.to_string(), pairs, c.queue_size,
           c.rate_limiter.limits() ? ", rate limited per direction" : "");
  return dev;
}

void add_net_counters(virtio::VirtioDevice& dev, std::map<std::string, uint64_t>& out) {
  auto* net = dynamic_cast<virtio::VirtioNet*>(&dev);
  if (!net) return;
  for (uint16_t p = 0; p < net->max_queue_pairs(); ++p) {
    const virtio::NetQueueStats& s = net->stats(p);
    out["rx_packets"] += s.rx_packets.load(std::memory_order_relaxed);
    out["rx_bytes"] += s.rx_bytes.load(std::memory_order_relaxed);
    out["rx_dropped"] += s.rx_dropped.load(std::memory_order_relaxed);
    out["tx_packets"] += s.tx_packets.load(std::memory_order_relaxed);
    out["tx_bytes"] += s.tx_bytes.load(std::memory_order_relaxed);
    out["tx_dropped"] += s.tx_dropped.load(std::memory_order_relaxed);
    out["tx_errors"] += s.tx_errors.load(std::memory_order_relaxed);
    out["rx_throttled"] += s.rx_throttled.load(std::memory_order_relaxed);
    out["tx_throttled"] += s.tx_throttled.load(std::memory_order_relaxed);
  }
}

}  // namespace skiff

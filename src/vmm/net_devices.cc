#include "vmm/net_devices.h"

#include <fcntl.h>

#include <algorithm>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/fd.h"
#include "base/log.h"
#include "net/mac_address.h"
#include "net/tap.h"
#include "net/vhost_net.h"
#include "virtio/devices/net.h"
#include "virtio/devices/vhost_net_device.h"

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

std::string vhost_net_fallback_message(const std::string& why) {
  return fmt::format("vhost=on: {}; using skiff's own virtio-net data path", why);
}

namespace {

// The tap of `c`: opened by name (created if missing) or adopted from
// duplicates of the inherited fds (they stay open for the next VM built
// from the same config: API vm.boot after vm.shutdown).
Result<std::unique_ptr<net::Tap>> open_tap(const NetConfig& c, uint16_t pairs,
                                           const std::string& what, net::TapUse use) {
  if (!c.tap.empty()) {
    auto t = net::Tap::open(c.tap, pairs, use);
    if (!t) return context(t.error(), what);
    return std::move(*t);
  }
  if (pairs != c.fds.size())
    return fail("{}: {} fds for {} queue pairs (give one fd per pair)", what, c.fds.size(), pairs);
  std::vector<Fd> fds;
  for (int fd : c.fds) {
    int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dup < 0) return fail_errno("{}: fd {} is not open", what, fd);
    fds.emplace_back(dup);
  }
  auto t = net::Tap::adopt(std::move(fds), use);
  if (!t) return context(t.error(), what);
  return std::move(*t);
}

Result<net::MacAddress> net_mac(const NetConfig& c, const std::string& what) {
  if (c.mac.empty()) return net::MacAddress::random_local();
  auto mac = net::MacAddress::parse(c.mac);
  if (!mac) return context(mac.error(), what);
  return *mac;
}

// The kernel data path, or why not (the caller falls back).
Result<std::unique_ptr<virtio::VhostNetDevice>> make_vhost_net(const NetConfig& c,
                                                               uint32_t boot_cpus,
                                                               const GuestMemory& mem,
                                                               const std::string& vhost_net_path,
                                                               const std::string& what) {
  // Probe before touching the tap, so a host without vhost-net falls back
  // with the tap untouched. SET_OWNER proves the device is vhost.
  SKIFF_TRY_VOID(net::VhostNet::open(vhost_net_path));
  // vhost-net's default max_mem_regions; skiff's layouts use a handful.
  if (mem.regions().size() > 64)
    return fail("guest RAM has {} regions, more than vhost-net's memory table takes (64)",
                mem.regions().size());
  uint16_t pairs = net_queue_pairs(c, boot_cpus);
  auto tap = SKIFF_TRY(open_tap(c, pairs, what, net::TapUse::kVhostNet));
  virtio::VhostNetOptions o;
  o.mac = SKIFF_TRY(net_mac(c, what));
  o.queue_size = c.queue_size;
  o.vhost_path = vhost_net_path;
  std::string tap_name = tap->name();
  auto dev = SKIFF_TRY(virtio::VhostNetDevice::create(std::move(tap), o));
  LOG_INFO("{}: tap {}, MAC {}, {} queue pair(s) of {} entries, data path in the kernel ({})", what,
           tap_name, o.mac.to_string(), pairs, c.queue_size, vhost_net_path);
  return dev;
}

}  // namespace

Result<std::unique_ptr<virtio::VirtioNet>> make_virtio_net(const NetConfig& c, uint32_t boot_cpus) {
  std::string what = describe_net(c);
  uint16_t pairs = net_queue_pairs(c, boot_cpus);
  auto tap = SKIFF_TRY(open_tap(c, pairs, what, net::TapUse::kUserspace));
  virtio::NetOptions opts;
  opts.mac = SKIFF_TRY(net_mac(c, what));
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

Result<std::unique_ptr<virtio::VirtioDevice>> make_net_device(const NetConfig& c,
                                                              uint32_t boot_cpus,
                                                              const GuestMemory& mem,
                                                              const std::string& vhost_net_path) {
  std::string what = describe_net(c);
  if (c.vhost) {
    // Frames on the kernel path never pass through skiff: nothing could
    // delay them. Refused rather than silently unlimited.
    if (c.rate_limiter.limits())
      return fail(
          "{}: vhost=on and a rate limit (bw_*/ops_*) do not go together: the kernel's data "
          "path cannot be rate limited; drop one of them",
          what);
    auto dev = make_vhost_net(c, boot_cpus, mem, vhost_net_path, what);
    if (dev) return std::move(*dev);
    LOG_WARN("{}: {}", what, vhost_net_fallback_message(dev.error().what()));
  }
  return SKIFF_TRY(make_virtio_net(c, boot_cpus));
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

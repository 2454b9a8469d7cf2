#include "cli/skiff_vhost/vhost_options.h"

#include <bit>

#include "cli/kv_options.h"

namespace skiff::cli {

// Ring indices in vhost-user's SET_VRING_* messages are 8 bits
// (specs/vhost-user.rst "SET_VRING_KICK"); 64 queues is plenty.
constexpr uint64_t kMaxQueues = 64;

Result<VhostDiskOptions> parse_vhost_disk(std::string_view value) {
  KvMap kv = SKIFF_TRY(
      parse_kv("--disk", value,
               {"path", "readonly", "num_queues", "queue_size", "direct", "serial", "format"}));
  VhostDiskOptions o;
  auto it = kv.find("path");
  if (it == kv.end() || it->second.empty()) return fail("--disk: path=FILE is required");
  o.path = it->second;
  if (auto f = kv.find("format"); f != kv.end()) {
    if (f->second != "raw" && f->second != "qcow2")
      return fail("--disk: format={} is not raw or qcow2", f->second);
    o.format = f->second;
  }
  if (auto r = kv.find("readonly"); r != kv.end())
    o.blk.read_only = SKIFF_TRY(parse_switch("--disk readonly", r->second));
  if (auto n = kv.find("num_queues"); n != kv.end())
    o.blk.num_queues =
        static_cast<uint16_t>(SKIFF_TRY(parse_uint("--disk num_queues", n->second, 1, kMaxQueues)));
  if (auto q = kv.find("queue_size"); q != kv.end()) {
    uint64_t size = SKIFF_TRY(parse_uint("--disk queue_size", q->second, 2, 32768));
    if (!std::has_single_bit(size))
      return fail("--disk: queue_size={} is not a power of 2", q->second);
    o.blk.queue_size = static_cast<uint16_t>(size);
  }
  if (auto d = kv.find("direct"); d != kv.end())
    o.direct = SKIFF_TRY(parse_switch("--disk direct", d->second));
  if (auto s = kv.find("serial"); s != kv.end()) {
    // virtio 1.2 §5.2.6: GET_ID returns 20 bytes.
    if (s->second.size() > virtio::kBlkIdBytes)
      return fail("--disk: serial={} is longer than {} bytes", s->second, virtio::kBlkIdBytes);
    o.blk.serial = s->second;
  }
  return o;
}

Result<VhostNetOptions> parse_vhost_net(std::string_view tap, uint64_t num_queues,
                                        std::string_view mac, uint64_t queue_size) {
  VhostNetOptions o;
  if (tap.empty() || tap.size() > 15)
    return fail("--tap: interface name '{}' must be 1 to 15 characters", tap);
  o.tap = tap;
  // One receive and one transmit queue per pair; the ring index limit
  // (kMaxQueues) bounds the total.
  if (num_queues < 2 || num_queues > kMaxQueues || num_queues % 2 != 0)
    return fail("--num-queues: {} is not an even number in [2, {}] (2 per queue pair)", num_queues,
                kMaxQueues);
  o.queue_pairs = static_cast<uint16_t>(num_queues / 2);
  if (queue_size < 2 || queue_size > 32768 || !std::has_single_bit(queue_size))
    return fail("--queue-size: {} is not a power of 2 in [2, 32768]", queue_size);
  o.net.queue_size = static_cast<uint16_t>(queue_size);
  if (mac.empty()) {
    o.net.mac = net::MacAddress::random_local();
  } else {
    o.net.mac = SKIFF_TRY(net::MacAddress::parse(mac));
    if (o.net.mac.is_multicast()) return fail("--mac: {} is a multicast address", mac);
  }
  o.net.control_queue = false;
  return o;
}

}  // namespace skiff::cli

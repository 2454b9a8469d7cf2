#include "virtio/devices/vhost_net_device.h"

#include <linux/virtio_ids.h>

#include <cstring>

#include "base/log.h"
#include "virtio/devices/net_features.h"
#include "virtio/devices/net_wire.h"

namespace skiff::virtio {

namespace {

constexpr uint64_t f(unsigned bit) {
  return feature_bit(bit);
}

// The bits that change how vhost-net walks the rings and lays out the
// header; the rest of the negotiation is skiff's and the tap's.
constexpr uint64_t kVhostRingFeatures = f(netwire::kFMrgRxbuf) | kCommonFeatures;

uint64_t offered_features(unsigned offloads, uint16_t pairs, uint64_t vhost_features) {
  uint64_t x = f(netwire::kFMac) | f(netwire::kFStatus) | f(netwire::kFCtrlVq) |
               f(netwire::kFCtrlMacAddr) | f(netwire::kFCtrlGuestOffloads) |
               net_offload_features(offloads);
  if (vhost_features & f(netwire::kFMrgRxbuf)) x |= f(netwire::kFMrgRxbuf);
  if (pairs > 1) x |= f(netwire::kFMq);
  return x;
}

}  // namespace

Result<std::unique_ptr<VhostNetDevice>> VhostNetDevice::create(std::unique_ptr<net::Tap> tap,
                                                               const VhostNetOptions& o) {
  uint16_t pairs = tap->num_queue_pairs();
  if (pairs == 0 || pairs > 64) return fail("vhost-net: {} queue pairs, want 1..64", pairs);
  if (o.queue_size < 2 || o.queue_size > kMaxQueueSize || (o.queue_size & (o.queue_size - 1)) != 0)
    return fail("vhost-net: queue size {} is not a power of 2 in [2, {}]", o.queue_size,
                kMaxQueueSize);
  std::vector<net::VhostNet> vhost;
  for (uint16_t i = 0; i < pairs; ++i)
    vhost.push_back(SKIFF_TRY(net::VhostNet::open(o.vhost_path)));
  uint64_t features = SKIFF_TRY(vhost[0].get_features());
  // skiff's transports offer these to every driver; a kernel that cannot
  // walk such rings cannot serve what the driver accepts.
  if (uint64_t missing = kCommonFeatures & ~features; missing != 0)
    return fail(
        "{} does not offer features {:#x} (VERSION_1, EVENT_IDX, INDIRECT_DESC), which skiff's "
        "virtio transports need",
        o.vhost_path, missing);
  uint64_t offered = offered_features(tap->supported_offloads(), pairs, features);
  std::unique_ptr<VhostNetDevice> dev(
      new VhostNetDevice(std::move(tap), std::move(vhost), features, offered, o));
  for (uint16_t i = 0; i < 2 * pairs; ++i) dev->rings_.push_back({SKIFF_TRY(RingRelay::create())});
  return dev;
}

VhostNetDevice::VhostNetDevice(std::unique_ptr<net::Tap> tap, std::vector<net::VhostNet> vhost,
                               uint64_t vhost_features, uint64_t offered, const VhostNetOptions& o)
    : VirtioDevice(VIRTIO_ID_NET, "vhost-net", offered,
                   static_cast<uint16_t>(2 * tap->num_queue_pairs() + 1), o.queue_size),
      tap_(std::move(tap)),
      vhost_(std::move(vhost)),
      vhost_features_(vhost_features),
      mac_(o.mac),
      pairs_(tap_->num_queue_pairs()) {
  config_bytes() = net_config_bytes(mac_, pairs_);
}

VhostNetDevice::~VhostNetDevice() {
  stop_rings();
}

int VhostNetDevice::ctrl_queue_index() const {
  return negotiated(netwire::kFMq) ? 2 * pairs_ : 2;
}

std::optional<uint16_t> VhostNetDevice::stopped_ring_base(uint16_t index) const {
  return index < rings_.size() ? rings_[index].stopped_base : std::nullopt;
}

std::vector<BackendEvent> VhostNetDevice::backend_events() const {
  std::vector<BackendEvent> out;
  for (uint16_t i = 0; i < rings_.size(); ++i) {
    out.push_back({rings_[i].relay.call_fd(), i});
    out.push_back({rings_[i].relay.err_fd(), i});
  }
  return out;
}

Result<> VhostNetDevice::validate_features(uint64_t x) const {
  return check_net_feature_dependencies(x, /*mq_needs_ctrl_vq=*/true);
}

Result<> VhostNetDevice::on_activate() {
  const GuestMemory& mem = *memory();
  std::vector<net::VhostMemoryRegion> table;
  for (const MemoryRegion& r : mem.regions())
    table.push_back({r.gpa, r.size, reinterpret_cast<uint64_t>(r.host)});
  const uint64_t ring_features = driver_features() & vhost_features_ & kVhostRingFeatures;
  for (const net::VhostNet& v : vhost_) {
    SKIFF_TRY_VOID(v.set_features(ring_features));
    SKIFF_TRY_VOID(v.set_mem_table(table));
  }
  filter_ = RxFilter{};
  filter_.mac = mac_;
  // §5.1.6.5.5: the driver starts on one pair and asks for more. Detach
  // the others before any ring starts so no frame is steered to them.
  SKIFF_TRY_VOID(apply_queue_pairs(1));
  SKIFF_TRY_VOID(tap_->set_offloads(net_guest_offloads(driver_features())));
  // Without MQ only pair 0 exists for the driver and queue 2 is the
  // control queue (§5.1.2), not pair 1's receive ring.
  const uint16_t rings = negotiated(netwire::kFMq) ? static_cast<uint16_t>(2 * pairs_) : 2;
  for (uint16_t i = 0; i < rings; ++i) {
    Queue& q = *queue(i);
    if (!q.active()) continue;
    if (auto r = start_ring(i, q); !r) return context(r.error(), fmt::format("ring {}", i));
  }
  return {};
}

Result<> VhostNetDevice::start_ring(uint16_t index, Queue& q) {
  const net::VhostNet& v = vhost_[index / 2];
  const unsigned ring = index % 2;  // VhostNet::kRxRing / kTxRing
  RingRelay& r = rings_[index].relay;
  rings_[index].stopped_base.reset();
  auto a = SKIFF_TRY(RingRelay::addresses(*memory(), q));
  SKIFF_TRY_VOID(v.set_vring_num(ring, q.size()));
  SKIFF_TRY_VOID(v.set_vring_addr(ring, a.desc, a.used, a.avail));
  SKIFF_TRY_VOID(v.set_vring_base(ring, q.next_avail()));
  r.drain();
  SKIFF_TRY_VOID(v.set_vring_call(ring, r.call_fd()));
  SKIFF_TRY_VOID(v.set_vring_err(ring, r.err_fd()));
  SKIFF_TRY_VOID(v.set_vring_kick(ring, r.kick_fd()));
  SKIFF_TRY_VOID(v.set_backend(ring, tap_->fd(index / 2)));
  r.start(a, q);
  return {};
}

void VhostNetDevice::stop_rings() {
  for (uint16_t i = 0; i < rings_.size(); ++i) {
    Ring& r = rings_[i];
    if (!r.relay.started()) continue;
    r.relay.stop();
    const net::VhostNet& v = vhost_[i / 2];
    // Detaching the backend flushes the vhost worker: once it returns the
    // kernel no longer touches this ring's guest memory.
    Result<uint16_t> base = fail("not stopped");
    if (auto detached = v.set_backend(i % 2, -1); !detached)
      base = std::unexpected(detached.error());
    else
      base = v.get_vring_base(i % 2);
    if (!base) {
      LOG_WARN("vhost-net: stopping ring {}: {}", i, base.error().what());
      r.stopped_base.reset();
    } else {
      r.stopped_base = *base;
    }
  }
}

void VhostNetDevice::on_reset() {
  stop_rings();
  for (auto& r : rings_) r.relay.drain();
  active_pairs_ = 1;
  // A MAC set through CTRL_MAC_ADDR lasts until reset.
  std::memcpy(config_bytes().data() + kNetConfigMac, mac_.bytes.data(), 6);
}

Result<> VhostNetDevice::apply_queue_pairs(uint16_t pairs) {
  for (uint16_t i = 0; i < pairs_; ++i) SKIFF_TRY_VOID(tap_->set_queue_pair_enabled(i, i < pairs));
  active_pairs_ = pairs;
  return {};
}

Result<> VhostNetDevice::handle_queue(uint16_t index, Queue& queue) {
  if (static_cast<int>(index) == ctrl_queue_index()) return handle_ctrl(index, queue);
  if (index >= rings_.size()) return {};
  auto interrupt = rings_[index].relay.relay(queue);
  if (!interrupt)
    return fail(
        "vhost-net reported an error on ring {} (a descriptor or ring outside guest RAM, or a "
        "malformed chain)",
        index);
  if (*interrupt) signal_used(index);
  return {};
}

Result<> VhostNetDevice::handle_ctrl(uint16_t index, Queue& queue) {
  if (SKIFF_TRY(serve_net_ctrl_queue(queue, ctrl_chain_, driver_features(), pairs_, filter_, *this,
                                     "vhost-net")))
    signal_used(index);
  return {};
}

Result<> VhostNetDevice::set_ctrl_queue_pairs(uint16_t pairs) {
  return apply_queue_pairs(pairs);
}

Result<> VhostNetDevice::set_ctrl_guest_offloads(uint64_t features) {
  return tap_->set_offloads(net_guest_offloads(features));
}

void VhostNetDevice::set_ctrl_mac(const net::MacAddress& mac) {
  update_config(mac.bytes, kNetConfigMac);
}

std::unique_lock<std::mutex> VhostNetDevice::lock_rx_filter() {
  // Only the device thread touches the filter.
  return {};
}

}  // namespace skiff::virtio

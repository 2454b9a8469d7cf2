#include "vhost_user/frontend_blk.h"

#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "base/log.h"

namespace skiff::vhost_user {

namespace {

using virtio::feature_bit;

// Device feature bits passed through from the back end (virtio 1.2
// §5.2.3): the ones whose config fields lie inside kVhostBlkConfigBytes
// and that need nothing from skiff. Left out: CONFIG_WCE (a writable
// config field; SET_CONFIG is not forwarded), SECURE_ERASE and ZONED
// (config fields past the bytes skiff exposes), legacy BARRIER/SCSI.
constexpr uint64_t kPassedBlkFeatures =
    feature_bit(VIRTIO_BLK_F_SIZE_MAX) | feature_bit(VIRTIO_BLK_F_SEG_MAX) |
    feature_bit(VIRTIO_BLK_F_GEOMETRY) | feature_bit(VIRTIO_BLK_F_RO) |
    feature_bit(VIRTIO_BLK_F_BLK_SIZE) | feature_bit(VIRTIO_BLK_F_FLUSH) |
    feature_bit(VIRTIO_BLK_F_TOPOLOGY) | feature_bit(VIRTIO_BLK_F_MQ) |
    feature_bit(VIRTIO_BLK_F_DISCARD) | feature_bit(VIRTIO_BLK_F_WRITE_ZEROES);

constexpr size_t kNumQueuesOffset = offsetof(virtio_blk_config, num_queues);
static_assert(kNumQueuesOffset + 2 <= kVhostBlkConfigBytes);
static_assert(offsetof(virtio_blk_config, unused1) + 3 == kVhostBlkConfigBytes);

}  // namespace

Result<VhostUserBlock::Negotiated> VhostUserBlock::negotiate(VhostUserFrontend& conn) {
  const std::string& socket = conn.path();
  uint64_t features = SKIFF_TRY(conn.get_features());
  // skiff's virtio-pci offers these to every driver (VirtioDevice adds
  // them); a back end without them cannot honour what the driver accepts.
  if (uint64_t missing = virtio::kCommonFeatures & ~features; missing != 0)
    return fail(
        "vhost-user back end {} does not offer features {:#x} (VERSION_1, EVENT_IDX, "
        "INDIRECT_DESC), which skiff's virtio-pci needs",
        socket, missing);
  bool protocol = (features & feature_bit(kFeatureProtocolFeatures)) != 0;
  uint64_t proto = 0;
  if (protocol) {
    proto = SKIFF_TRY(conn.get_protocol_features()) & kFrontendProtocolFeatures;
    SKIFF_TRY_VOID(conn.set_protocol_features(proto));
  }
  if (!(proto & (1ull << kProtocolConfig)))
    return fail(
        "vhost-user back end {} does not support VHOST_USER_PROTOCOL_F_CONFIG; skiff "
        "needs it to read the disk's capacity",
        socket);
  SKIFF_TRY_VOID(conn.set_owner());
  uint64_t max_queues = 1;
  if ((proto & (1ull << kProtocolMq)) && (features & feature_bit(VIRTIO_BLK_F_MQ)))
    max_queues = std::clamp<uint64_t>(SKIFF_TRY(conn.get_queue_num()), 1, 64);
  return Negotiated{features, protocol, static_cast<uint16_t>(max_queues)};
}

Result<std::unique_ptr<VhostUserBlock>> VhostUserBlock::create(const VhostUserBlkOptions& o) {
  auto conn = SKIFF_TRY(VhostUserFrontend::connect(o.socket, o.timeout));
  Negotiated n = SKIFF_TRY(negotiate(*conn));
  uint64_t features = n.features;
  uint16_t max_queues = n.max_queues;
  uint16_t num = o.num_queues;
  if (num == 0) num = std::clamp<uint16_t>(o.default_queues, 1, max_queues);
  if (num > max_queues)
    return fail("num_queues={} but vhost-user back end {} serves at most {}", num, o.socket,
                max_queues);

  std::unique_ptr<VhostUserBlock> dev(new VhostUserBlock(
      std::move(conn), features, features & kPassedBlkFeatures, n.protocol, num, o.queue_size));
  dev->timeout_ = o.timeout;
  for (uint16_t i = 0; i < num; ++i)
    dev->rings_.push_back({SKIFF_TRY(virtio::RingRelay::create())});
  SKIFF_TRY_VOID(dev->fetch_config());
  LOG_INFO("vhost-user-blk: {}: {} queue(s) of {}, back-end features {:#x}", o.socket, num,
           o.queue_size, features);
  return dev;
}

VhostUserBlock::VhostUserBlock(std::unique_ptr<VhostUserFrontend> conn, uint64_t backend_features,
                               uint64_t offered, bool protocol_features, uint16_t num_queues,
                               uint16_t queue_size)
    : VirtioDevice(VIRTIO_ID_BLOCK, "vhost-user-blk", offered, num_queues, queue_size),
      conn_(std::move(conn)),
      backend_features_(backend_features),
      protocol_features_(protocol_features) {}

VhostUserBlock::~VhostUserBlock() {
  stop_rings();
}

std::vector<virtio::BackendEvent> VhostUserBlock::backend_events() const {
  std::vector<virtio::BackendEvent> out;
  for (uint16_t i = 0; i < rings_.size(); ++i) {
    out.push_back({rings_[i].relay.call_fd(), i});
    out.push_back({rings_[i].relay.err_fd(), i});
  }
  // A hang-up (EPOLLHUP/EPOLLRDHUP are reported whatever was asked for).
  out.push_back({conn_->socket_fd(), 0});
  return out;
}

Result<> VhostUserBlock::fetch_config() {
  auto bytes = SKIFF_TRY(conn_->get_config(0, kVhostBlkConfigBytes));
  // The driver may use only the queues skiff exposes (§5.2.4 num_queues).
  uint16_t n = num_queues();
  std::memcpy(bytes.data() + kNumQueuesOffset, &n, sizeof n);
  config_bytes() = std::move(bytes);
  return {};
}

Result<> VhostUserBlock::on_activate() {
  const GuestMemory& mem = *memory();
  uint64_t features = driver_features();
  if (protocol_features_) features |= feature_bit(kFeatureProtocolFeatures);
  SKIFF_TRY_VOID(conn_->set_features(features));
  SKIFF_TRY_VOID(conn_->set_mem_table(mem));
  for (uint16_t i = 0; i < num_queues(); ++i) {
    virtio::Queue& q = *queue(i);
    if (!q.active()) continue;
    if (auto r = start_ring(i, q); !r) return context(r.error(), fmt::format("ring {}", i));
  }
  return {};
}

Result<> VhostUserBlock::start_ring(uint16_t index, virtio::Queue& q) {
  Ring& r = rings_[index];
  // "Ring states": size, addresses and base first; the kick fd starts
  // the ring; with PROTOCOL_FEATURES it starts disabled until ENABLE 1.
  SKIFF_TRY_VOID(conn_->set_vring_num(index, q.size()));
  auto a = SKIFF_TRY(virtio::RingRelay::addresses(*memory(), q));
  SKIFF_TRY_VOID(conn_->set_vring_addr(index, a.desc, a.used, a.avail));
  SKIFF_TRY_VOID(conn_->set_vring_base(index, q.next_avail()));
  r.relay.drain();
  SKIFF_TRY_VOID(conn_->set_vring_call(index, r.relay.call_fd()));
  SKIFF_TRY_VOID(conn_->set_vring_err(index, r.relay.err_fd()));
  SKIFF_TRY_VOID(conn_->set_vring_kick(index, r.relay.kick_fd()));
  r.started = true;
  if (protocol_features_) SKIFF_TRY_VOID(conn_->set_vring_enable(index, true));
  // Buffers made available before DRIVER_OK get no notification of their
  // own: start() kicks for them.
  r.relay.start(a, q);
  return {};
}

void VhostUserBlock::stop_rings() {
  Result<> first;
  for (uint16_t i = 0; i < rings_.size(); ++i) {
    Ring& r = rings_[i];
    if (!r.started) continue;
    r.started = false;
    r.relay.stop();
    // Disable, then stop: GET_VRING_BASE returns only after the back end
    // has finished with the ring, so guest memory is no longer touched.
    Result<> res = protocol_features_ ? conn_->set_vring_enable(i, false) : Result<>();
    if (res) {
      auto base = conn_->get_vring_base(i);
      if (!base) res = std::unexpected(base.error());
    }
    if (!res && first) first = context(res.error(), fmt::format("stopping ring {}", i));
  }
  if (!first) LOG_WARN("vhost-user-blk {}: {}", conn_->path(), first.error().what());
}

Result<> VhostUserBlock::reconnect() {
  auto conn = SKIFF_TRY(VhostUserFrontend::connect(conn_->path(), timeout_));
  Negotiated n = SKIFF_TRY(negotiate(*conn));
  // The driver already negotiated with the old back end's device: the new
  // one must be the same device.
  if (n.features != backend_features_ || n.protocol != protocol_features_)
    return fail("the back end came back with features {:#x} instead of {:#x}", n.features,
                backend_features_);
  if (n.max_queues < num_queues())
    return fail("the back end came back serving {} queues instead of {}", n.max_queues,
                num_queues());
  conn_ = std::move(conn);
  return {};
}

void VhostUserBlock::on_reset() {
  if (conn_->peer_closed()) {
    // The back end went away (it is restarted by whoever runs it): its
    // rings died with it, so there is nothing to stop. Try the socket again
    // so the driver's re-initialisation finds a working device.
    for (auto& r : rings_) {
      r.started = false;
      r.relay.stop();
    }
    if (auto r = reconnect(); !r)
      LOG_WARN("vhost-user-blk {}: reconnecting: {}", conn_->path(), r.error().what());
    else
      LOG_INFO("vhost-user-blk {}: reconnected to the back end", conn_->path());
  }
  stop_rings();
  for (auto& r : rings_) r.relay.drain();
  // The driver re-reads the config after a reset: give it the back end's
  // current one (a resized image shows up here).
  if (auto r = fetch_config(); !r)
    LOG_WARN("vhost-user-blk {}: re-reading the config: {}", conn_->path(), r.error().what());
}

Result<> VhostUserBlock::handle_queue(uint16_t index, virtio::Queue& queue) {
  Ring& r = rings_[index];
  // The socket's hang-up wakes queue 0 (backend_events); checking on every
  // queue also covers a reconnected socket, which the transport does not watch.
  if (conn_->peer_closed())
    return fail("vhost-user back end {} closed the connection", conn_->path());
  // The back end's err fd, its call (it applied EVENT_IDX / NO_INTERRUPT
  // itself) and a kick for buffers it was not told about (ring_relay.h).
  auto interrupt = r.relay.relay(queue);
  if (!interrupt)
    return fail("vhost-user back end {} reported an error on ring {}", conn_->path(), index);
  if (*interrupt) signal_used(index);
  return {};
}

}  // namespace skiff::vhost_user

#include "vhost_user/frontend_blk.h"

#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <atomic>
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

uint64_t user_address(const GuestMemory& mem, uint64_t gpa, uint64_t len) {
  // Queue::activate has checked the whole area against `mem` already.
  auto s = mem.slice(gpa, len);
  return s ? reinterpret_cast<uint64_t>(s->data()) : 0;
}

uint16_t load_index(const uint16_t* p) {
  // The other side (driver or back end) writes it concurrently; acquire
  // orders the ring entries it published before the index.
  return std::atomic_ref<uint16_t>(*const_cast<uint16_t*>(p)).load(std::memory_order_acquire);
}

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
  for (auto& r : dev->rings_) {
    r.kick = SKIFF_TRY(EventFd::create(0, EFD_NONBLOCK));
    r.call = SKIFF_TRY(EventFd::create(0, EFD_NONBLOCK));
    r.err = SKIFF_TRY(EventFd::create(0, EFD_NONBLOCK));
  }
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
      protocol_features_(protocol_features),
      rings_(num_queues) {}

VhostUserBlock::~VhostUserBlock() {
  stop_rings();
}

std::vector<virtio::BackendEvent> VhostUserBlock::backend_events() const {
  std::vector<virtio::BackendEvent> out;
  for (uint16_t i = 0; i < rings_.size(); ++i) {
    out.push_back({rings_[i].call.get(), i});
    out.push_back({rings_[i].err.get(), i});
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
  const GuestMemory& mem = *memory();
  Ring& r = rings_[index];
  // "Ring states": size, addresses and base first; the kick fd starts
  // the ring; with PROTOCOL_FEATURES it starts disabled until ENABLE 1.
  SKIFF_TRY_VOID(conn_->set_vring_num(index, q.size()));
  uint64_t desc = user_address(mem, q.desc_table(), virtio::desc_table_bytes(q.size()));
  uint64_t used = user_address(mem, q.used_ring(), virtio::used_ring_bytes(q.size()));
  uint64_t avail = user_address(mem, q.avail_ring(), virtio::avail_ring_bytes(q.size()));
  if (desc == 0 || used == 0 || avail == 0) return fail("ring areas are not guest RAM");
  SKIFF_TRY_VOID(conn_->set_vring_addr(index, desc, used, avail));
  SKIFF_TRY_VOID(conn_->set_vring_base(index, q.next_avail()));
  (void)r.call.consume();
  (void)r.err.consume();
  SKIFF_TRY_VOID(conn_->set_vring_call(index, r.call.get()));
  SKIFF_TRY_VOID(conn_->set_vring_err(index, r.err.get()));
  SKIFF_TRY_VOID(conn_->set_vring_kick(index, r.kick.get()));
  r.started = true;
  if (protocol_features_) SKIFF_TRY_VOID(conn_->set_vring_enable(index, true));
  // avail->idx is at offset 2 of the avail ring, used->idx at 2 of the used ring (§2.7.6, §2.7.8).
  r.avail_idx = reinterpret_cast<const uint16_t*>(avail + 2);
  r.used_idx = reinterpret_cast<const uint16_t*>(used + 2);
  r.kicked_avail = q.next_avail();
  // Buffers made available before DRIVER_OK get no notification of their own.
  if (load_index(r.avail_idx) != r.kicked_avail) {
    r.kicked_avail = load_index(r.avail_idx);
    r.kick.signal();
  }
  return {};
}

void VhostUserBlock::stop_rings() {
  Result<> first;
  for (uint16_t i = 0; i < rings_.size(); ++i) {
    Ring& r = rings_[i];
    if (!r.started) continue;
    r.started = false;
    r.avail_idx = r.used_idx = nullptr;
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
    for (auto& r : rings_) r.started = false;
    if (auto r = reconnect(); !r)
      LOG_WARN("vhost-user-blk {}: reconnecting: {}", conn_->path(), r.error().what());
    else
      LOG_INFO("vhost-user-blk {}: reconnected to the back end", conn_->path());
  }
  stop_rings();
  for (auto& r : rings_) {
    (void)r.call.consume();
    (void)r.err.consume();
  }
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
  if (r.err.consume() != 0)
    return fail("vhost-user back end {} reported an error on ring {}", conn_->path(), index);
  if (!r.started) return {};
  if (r.call.consume() != 0) {
    // The back end decided the driver wants this interrupt (it applies
    // EVENT_IDX / NO_INTERRUPT itself). Restating the used position makes
    // the Queue's next check answer "notify" for EVENT_IDX and re-read the
    // NO_INTERRUPT flag otherwise (queue.h needs_notification).
    queue.set_ring_positions(queue.next_avail(), load_index(r.used_idx));
    signal_used(index);
  }
  // Kick only for buffers the back end has not been kicked for: a call
  // event also runs this function, and a guest notification that found
  // nothing new needs no second kick.
  uint16_t avail = load_index(r.avail_idx);
  if (avail != r.kicked_avail) {
    r.kicked_avail = avail;
    r.kick.signal();
  }
  return {};
}

}  // namespace skiff::vhost_user

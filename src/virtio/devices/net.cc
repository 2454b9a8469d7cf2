#include "virtio/devices/net.h"

#include <cstring>

#include "base/log.h"
#include "virtio/devices/net_features.h"
#include "virtio/devices/net_rx.h"
#include "virtio/devices/net_wire.h"

namespace skiff::virtio {

namespace {

static_assert(sizeof(netwire::Header) == net::kVnetHeaderBytes);

constexpr uint64_t f(unsigned bit) {
  return feature_bit(bit);
}

uint64_t offered_features(unsigned offloads, uint16_t pairs, bool control_queue) {
  uint64_t x = f(netwire::kFMac) | f(netwire::kFStatus) | f(netwire::kFMrgRxbuf) |
               net_offload_features(offloads);
  if (control_queue)
    x |= f(netwire::kFCtrlVq) | f(netwire::kFCtrlRx) | f(netwire::kFCtrlRxExtra) |
         f(netwire::kFCtrlVlan) | f(netwire::kFCtrlMacAddr) | f(netwire::kFCtrlGuestOffloads);
  if (pairs > 1) x |= f(netwire::kFMq);
  return x;
}

// A transmit header the device can act on (§5.1.6.2): offloads only as
// negotiated, a checksum position inside the frame.
bool tx_header_ok(const netwire::Header& h, uint64_t frame_len, uint64_t features) {
  auto has = [&](unsigned bit) { return (features & f(bit)) != 0; };
  if (frame_len < 14 || frame_len > net::kMaxFrameBytes) return false;
  switch (h.gso_type & ~netwire::kGsoEcn) {
    case netwire::kGsoNone:
      if (h.gso_type & netwire::kGsoEcn) return false;
      break;
    case netwire::kGsoTcpV4:
      if (!has(netwire::kFHostTso4)) return false;
      break;
    case netwire::kGsoTcpV6:
      if (!has(netwire::kFHostTso6)) return false;
      break;
    case netwire::kGsoUdp:
      if (!has(netwire::kFHostUfo)) return false;
      break;
    default:
      return false;
  }
  if ((h.gso_type & netwire::kGsoEcn) && !has(netwire::kFHostEcn)) return false;
  if (h.flags & netwire::kHdrNeedsCsum) {
    if (!has(netwire::kFCsum)) return false;
    if (uint64_t{h.csum_start} + h.csum_offset + 2 > frame_len) return false;
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<VirtioNet>> VirtioNet::create(std::unique_ptr<net::NetBackend> backend,
                                                     NetOptions options) {
  uint16_t pairs = backend->num_queue_pairs();
  // 2N (+1) queues must fit vhost-user's 8-bit ring index and the spec's
  // 0x8000 pair limit; 64 pairs is far beyond any real use.
  if (pairs == 0 || pairs > 64) return fail("virtio-net: {} queue pairs, want 1..64", pairs);
  if (options.queue_size < 2 || options.queue_size > kMaxQueueSize ||
      (options.queue_size & (options.queue_size - 1)) != 0)
    return fail("virtio-net: queue size {} is not a power of 2 in [2, {}]", options.queue_size,
                kMaxQueueSize);
  uint64_t features = offered_features(backend->supported_offloads(), pairs, options.control_queue);
  std::unique_ptr<VirtioNet> dev(new VirtioNet(std::move(backend), options, features));
  SKIFF_TRY_VOID(dev->init_rate_limiting());
  return dev;
}

Result<> VirtioNet::init_rate_limiting() {
  if (!options_.rate_limiter.limits()) return {};
  for (auto* v : {&rx_throttle_, &tx_throttle_}) {
    for (uint16_t i = 0; i < pairs_; ++i) {
      auto timer = SKIFF_TRY(net::RateLimitTimer::create());
      v->push_back({net::RateLimiter(options_.rate_limiter, options_.clock), std::move(timer)});
    }
  }
  return {};
}

bool VirtioNet::pass_rate_limit(std::vector<Throttle>& throttles, uint16_t pair,
                                uint64_t frame_bytes, std::atomic<uint64_t>& throttled) {
  if (throttles.empty()) return true;
  Throttle& t = throttles[pair];
  // Reading a fired timer re-arms its edge for the epoll loop (EPOLLET).
  if (t.timer.armed()) (void)t.timer.consume();
  if (t.limiter.try_consume(frame_bytes)) return true;
  bump_counter(throttled);
  if (auto r = t.timer.arm(t.limiter.wait_time(frame_bytes)); !r)
    LOG_WARN("virtio net: pair {}: {}; the queue waits for the next notification", pair,
             r.error().what());
  return false;
}

VirtioNet::VirtioNet(std::unique_ptr<net::NetBackend> backend, NetOptions options,
                     uint64_t features)
    : VirtioDevice(
          kVirtioIdNet, "net", features,
          static_cast<uint16_t>(2 * backend->num_queue_pairs() + (options.control_queue ? 1 : 0)),
          options.queue_size),
      backend_(std::move(backend)),
      options_(options),
      pairs_(backend_->num_queue_pairs()),
      rx_ring_enabled_(pairs_, 1),
      stats_(new NetQueueStats[pairs_]),
      tx_(pairs_) {
  for (uint16_t i = 0; i < pairs_; ++i) rx_.push_back(std::make_unique<RxState>());
  config_bytes() = net_config_bytes(options_.mac, pairs_);
  filter_.mac = options_.mac;
}

VirtioNet::~VirtioNet() = default;

int VirtioNet::ctrl_queue_index() const {
  if (!options_.control_queue) return -1;
  return negotiated(netwire::kFMq) ? 2 * pairs_ : 2;
}

std::vector<BackendEvent> VirtioNet::backend_events() const {
  std::vector<BackendEvent> out;
  for (uint16_t i = 0; i < pairs_; ++i)
    if (int fd = backend_->rx_event_fd(i); fd >= 0)
      out.push_back({fd, static_cast<uint16_t>(2 * i)});
  for (uint16_t i = 0; i < pairs_; ++i)
    if (int fd = backend_->tx_event_fd(i); fd >= 0)
      out.push_back({fd, static_cast<uint16_t>(2 * i + 1), EPOLLOUT});
  for (uint16_t i = 0; i < rx_throttle_.size(); ++i)
    out.push_back({rx_throttle_[i].timer.fd(), static_cast<uint16_t>(2 * i)});
  for (uint16_t i = 0; i < tx_throttle_.size(); ++i)
    out.push_back({tx_throttle_[i].timer.fd(), static_cast<uint16_t>(2 * i + 1)});
  return out;
}

Result<> VirtioNet::validate_features(uint64_t x) const {
  // MQ needs CTRL_VQ only where this device has the control queue; a
  // vhost-user front end keeps it (and its MQ command) to itself.
  return check_net_feature_dependencies(x, /*mq_needs_ctrl_vq=*/options_.control_queue);
}

Result<> VirtioNet::on_activate() {
  {
    std::lock_guard lock(filter_mu_);
    filter_ = RxFilter{};
    filter_.mac = options_.mac;
    filter_.rx_mode = negotiated(netwire::kFCtrlRx);
    filter_.vlan_filter = negotiated(netwire::kFCtrlVlan);
    filter_generation_.fetch_add(1, std::memory_order_release);
  }
  for (auto& rx : rx_) rx->restart();
  // §5.1.6.5.5: with the control queue the driver starts on one pair and
  // asks for more; without it the front end decides, so all are ready.
  SKIFF_TRY_VOID(apply_queue_pairs(options_.control_queue ? 1 : pairs_));
  return backend_->set_offloads(net_guest_offloads(driver_features()));
}

void VirtioNet::on_reset() {
  active_pairs_.store(1, std::memory_order_release);
  // The next front end tells the ring states afresh (or never: virtio-pci).
  rx_ring_enabled_.assign(pairs_, 1);
  // A MAC set through CTRL_MAC_ADDR lasts until reset.
  std::memcpy(config_bytes().data() + kNetConfigMac, options_.mac.bytes.data(), 6);
}

Result<> VirtioNet::apply_queue_pairs(uint16_t pairs) {
  for (uint16_t i = 0; i < pairs_; ++i)
    SKIFF_TRY_VOID(backend_->set_queue_pair_enabled(i, i < pairs && rx_ring_enabled_[i]));
  active_pairs_.store(pairs, std::memory_order_release);
  return {};
}

void VirtioNet::on_queue_enabled(uint16_t index, bool enabled) {
  // The pair's receive ring decides: that is where the kernel steers frames.
  if (static_cast<int>(index) == ctrl_queue_index() || index % 2 != 0 || index / 2 >= pairs_)
    return;
  const auto pair = static_cast<uint16_t>(index / 2);
  rx_ring_enabled_[pair] = enabled;
  bool attach = enabled && pair < active_pairs_.load(std::memory_order_acquire);
  if (auto r = backend_->set_queue_pair_enabled(pair, attach); !r)
    LOG_WARN("virtio net: {} queue pair {}: {}", attach ? "attaching" : "detaching", pair,
             r.error().what());
}

Result<> VirtioNet::handle_queue(uint16_t index, Queue& queue) {
  if (static_cast<int>(index) == ctrl_queue_index()) return handle_ctrl(index, queue);
  uint16_t pair = index / 2;
  if (pair >= pairs_) return {};
  return index % 2 == 0 ? handle_rx(pair, queue) : handle_tx(pair, queue);
}

Result<> VirtioNet::handle_tx(uint16_t pair, Queue& queue) {
  TxState& t = tx_[pair];
  NetQueueStats& st = stats_[pair];
  const uint64_t features = driver_features();
  const uint16_t index = static_cast<uint16_t>(2 * pair + 1);
  // Puts the chain just popped back: the next pop_into() returns it again.
  auto unpop = [&queue](uint16_t count) {
    queue.set_ring_positions(static_cast<uint16_t>(queue.next_avail() - count), queue.next_used());
  };
  bool used = false;
  bool more = true;
  while (more) {
    size_t n = 0;
    while (n < net::kMaxSendBatch) {
      DescriptorChain& c = t.chains[n];
      if (!SKIFF_TRY(queue.pop_into(c))) {
        more = false;
        break;
      }
      // §5.1.6.2: a transmit buffer is the header then the frame, all
      // driver-readable.
      if (c.writable_bytes() != 0)
        return fail("transmit chain {} has {} device-writable bytes", c.head(), c.writable_bytes());
      if (c.readable_bytes() < net::kVnetHeaderBytes)
        return fail("transmit chain {} of {} bytes is shorter than the {}-byte virtio-net header",
                    c.head(), c.readable_bytes(), net::kVnetHeaderBytes);
      netwire::Header& hdr = t.hdrs[n];
      (void)copy_from_buffers(c.readable(), 0,
                              std::span(reinterpret_cast<uint8_t*>(&hdr), sizeof hdr));
      const uint64_t frame_len = c.readable_bytes() - net::kVnetHeaderBytes;
      if (!tx_header_ok(hdr, frame_len, features)) {
        if (n > 0) {
          // Send the batch first; this chain is popped again after it.
          unpop(1);
          break;
        }
        bump_counter(st.tx_dropped);
        SKIFF_TRY_VOID(queue.add_used(c.head(), 0));
        used = true;
        continue;
      }
      if (!pass_rate_limit(tx_throttle_, pair, frame_len, st.tx_throttled)) {
        // Over the rate: the chain stays available; the limiter's timer (a
        // BackendEvent of this queue) resumes the queue.
        unpop(1);
        more = false;
        break;
      }
      // The frame goes out with the header we checked, not the guest's copy.
      hdr.num_buffers = 0;
      t.frame_len[n] = frame_len;
      ++n;
    }
    if (n == 0) break;
    if (!SKIFF_TRY(send_tx_batch(pair, queue, n))) more = false;
    used = true;
  }
  if (used) signal_used(index);
  return {};
}

void VirtioNet::gather_tx_frame(TxState& t, size_t n) {
  const BufferList bufs = t.chains[n].readable();
  const uint64_t frame_len = t.frame_len[n];
  const size_t start = t.iov.size();
  if (frame_len <= kTxCopyMaxBytes) {
    // A small frame goes out as one buffer, header and frame copied side
    // by side: the kernel's single-buffer write costs less than importing
    // and walking a two-piece iovec, by more than the copy does.
    std::vector<uint8_t>& linear = t.linear[n];
    if (linear.size() < net::kVnetHeaderBytes + kTxCopyMaxBytes)
      linear.resize(net::kVnetHeaderBytes + kTxCopyMaxBytes);
    std::memcpy(linear.data(), &t.hdrs[n], sizeof t.hdrs[n]);
    size_t copied = copy_from_buffers(
        bufs, net::kVnetHeaderBytes,
        std::span(linear).subspan(sizeof t.hdrs[n], static_cast<size_t>(frame_len)));
    t.iov.push_back({linear.data(), sizeof t.hdrs[n] + copied});
    return;
  }
  t.iov.push_back({&t.hdrs[n], sizeof t.hdrs[n]});
  bool fits = for_each_piece(bufs, net::kVnetHeaderBytes, frame_len, [&](auto piece) {
    if (t.iov.size() - start == net::kMaxIov) return false;
    t.iov.push_back({piece.data(), piece.size()});
    return true;
  });
  if (!fits) {
    // More pieces than writev takes (a long indirect chain): one copy.
    std::vector<uint8_t>& linear = t.linear[n];
    if (linear.size() < net::kMaxFrameBytes) linear.resize(net::kMaxFrameBytes);
    size_t copied = copy_from_buffers(bufs, net::kVnetHeaderBytes,
                                      std::span(linear).first(static_cast<size_t>(frame_len)));
    t.iov.resize(start + 1);
    t.iov.push_back({linear.data(), copied});
  }
}

Result<bool> VirtioNet::send_tx_batch(uint16_t pair, Queue& queue, size_t n) {
  TxState& t = tx_[pair];
  NetQueueStats& st = stats_[pair];
  // The iovecs first, the spans over them after: t.iov may move as it grows.
  t.iov.clear();
  for (size_t i = 0; i < n; ++i) {
    t.iov_start[i] = t.iov.size();
    gather_tx_frame(t, i);
  }
  t.iov_start[n] = t.iov.size();
  for (size_t i = 0; i < n; ++i)
    t.frames[i] =
        std::span<const iovec>(t.iov).subspan(t.iov_start[i], t.iov_start[i + 1] - t.iov_start[i]);
  auto taken = backend_->send_batch(pair, std::span(t.frames).first(n), t.refused);
  if (!taken) {
    // The backend itself failed (not one frame): the batch is lost, as a
    // refused frame is; the guest gets its buffers back.
    LOG_DEBUG("virtio net: pair {}: {}", pair, taken.error().what());
    for (size_t i = 0; i < n; ++i) t.refused[i] = EIO;
    taken = n;
  }
  for (size_t i = 0; i < *taken; ++i) {
    if (t.refused[i] != 0) {
      bump_counter(st.tx_errors);
      LOG_DEBUG("virtio net: pair {}: a frame of {} bytes refused: {}", pair, t.frame_len[i],
                std::strerror(t.refused[i]));
    } else {
      bump_counter(st.tx_packets);
      bump_counter(st.tx_bytes, t.frame_len[i]);
    }
    SKIFF_TRY_VOID(queue.add_used(t.chains[i].head(), 0));
  }
  // What a batch keeps between calls stays small whatever the driver sent:
  // long chains' buffer lists and the copies of frames in more than kMaxIov
  // pieces are freed again.
  for (size_t i = 0; i < n; ++i) {
    t.chains[i].trim(net::kMaxIov);
    if (t.linear[i].size() > net::kVnetHeaderBytes + kTxCopyMaxBytes) {
      t.linear[i].clear();
      t.linear[i].shrink_to_fit();
    }
  }
  if (*taken == n) return true;
  // The backend is full: the rest stay available; its tx_event_fd or the
  // next notification retries (see the header comment).
  queue.set_ring_positions(static_cast<uint16_t>(queue.next_avail() - (n - *taken)),
                           queue.next_used());
  return false;
}

Result<> VirtioNet::handle_ctrl(uint16_t index, Queue& queue) {
  if (SKIFF_TRY(serve_net_ctrl_queue(queue, ctrl_chain_, driver_features(), pairs_, filter_, *this,
                                     "virtio net")))
    signal_used(index);
  return {};
}

Result<> VirtioNet::set_ctrl_queue_pairs(uint16_t pairs) {
  return apply_queue_pairs(pairs);
}

Result<> VirtioNet::set_ctrl_guest_offloads(uint64_t features) {
  return backend_->set_offloads(net_guest_offloads(features));
}

void VirtioNet::set_ctrl_mac(const net::MacAddress& mac) {
  update_config(mac.bytes, kNetConfigMac);
}

std::unique_lock<std::mutex> VirtioNet::lock_rx_filter() {
  return std::unique_lock(filter_mu_);
}

void VirtioNet::rx_filter_changed() {
  // rx threads copy the filter when they see the generation move.
  filter_generation_.fetch_add(1, std::memory_order_release);
}

}  // namespace skiff::virtio

#include "vhost_user/backend.h"

#include <poll.h>
#include <unistd.h>

#include <cstring>

#include "base/log.h"

namespace skiff::vhost_user {

namespace {

template <typename T>
std::vector<uint8_t> bytes_of(const T& v) {
  std::vector<uint8_t> out(sizeof v);
  std::memcpy(out.data(), &v, sizeof v);
  return out;
}

void write_eventfd(int fd) {
  uint64_t one = 1;
  // EAGAIN (counter full) already means "signalled".
  (void)!::write(fd, &one, sizeof one);
}

}  // namespace

VhostUserBackend::VhostUserBackend(virtio::VirtioDevice& device) : device_(device) {
  for (uint16_t i = 0; i < device_.num_queues(); ++i) rings_.push_back(std::make_unique<Ring>());
  device_.set_interrupt(
      [this](virtio::InterruptKind kind, uint16_t queue) { interrupt(kind, queue); });
}

VhostUserBackend::~VhostUserBackend() {
  reset();
  device_.set_interrupt(nullptr);
}

void VhostUserBackend::interrupt(virtio::InterruptKind kind, uint16_t queue) {
  if (kind == virtio::InterruptKind::kUsedBuffer) {
    if (queue >= rings_.size()) return;
    Ring& r = *rings_[queue];
    std::lock_guard lock(r.call_mu);
    if (r.call) write_eventfd(r.call.get());
    return;
  }
  // Config change: without SLAVE_REQ there is no config-change message;
  // the only config change a skiff device makes is DEVICE_NEEDS_RESET, and
  // the err fd is the front end's "this ring failed" signal.
  for (auto& r : rings_) {
    std::lock_guard lock(r->call_mu);
    if (r->err) write_eventfd(r->err.get());
  }
}

Result<> VhostUserBackend::serve(int sock, int stop_fd) {
  for (;;) {
    pollfd fds[2] = {{sock, POLLIN, 0}, {stop_fd, POLLIN, 0}};
    int n = ::poll(fds, stop_fd >= 0 ? 2 : 1, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("poll on the vhost-user connection");
    }
    if (stop_fd >= 0 && (fds[1].revents & POLLIN)) return {};
    auto msg = SKIFF_TRY(read_message(sock));
    if (!msg) return {};  // the front end hung up
    if (auto r = handle(sock, *msg); !r)
      return context(r.error(), fmt::format("{} ({})", request_name(msg->header.request),
                                            msg->header.request));
  }
}

Result<> VhostUserBackend::handle(int sock, Message& msg) {
  uint64_t ack_status = 0;
  Reply reply = SKIFF_TRY(dispatch(msg, ack_status));
  if (reply) return send_reply(sock, msg.header.request, *reply);
  // REPLY_ACK ("REPLY_ACK"): a request without its own reply is answered
  // with u64 0 (success) or non-zero when the front end asked for it.
  if (msg.need_reply() && (protocol_features_ & (1ull << kProtocolReplyAck)))
    return send_reply(sock, msg.header.request, bytes_of(ack_status));
  return {};
}

Result<VhostUserBackend::Ring*> VhostUserBackend::ring_at(uint32_t index, std::string_view what) {
  if (index >= rings_.size())
    return fail("{} for ring {}, the device has {}", what, index, rings_.size());
  return rings_[index].get();
}

Result<VhostUserBackend::Reply> VhostUserBackend::dispatch(Message& msg, uint64_t& ack_status) {
  const auto req = static_cast<Request>(msg.header.request);
  // Only these requests carry fds; anything else with fds is malformed.
  bool takes_fds = req == Request::kSetMemTable || req == Request::kSetVringKick ||
                   req == Request::kSetVringCall || req == Request::kSetVringErr;
  if (!takes_fds && !msg.fds.empty())
    return fail("unexpected {} file descriptor(s)", msg.fds.size());

  switch (req) {
    case Request::kGetFeatures:
      return bytes_of(device_.device_features() | virtio::feature_bit(kFeatureProtocolFeatures));
    case Request::kSetFeatures: {
      uint64_t f = msg.as<uint64_t>();
      uint64_t offered = device_.device_features() | virtio::feature_bit(kFeatureProtocolFeatures);
      if (f & ~offered)
        return fail("features {:#x} were not offered ({:#x})", f & ~offered, offered);
      acked_features_ = f;
      features_set_ = true;
      return Reply();
    }
    case Request::kGetProtocolFeatures:
      return bytes_of(kOfferedProtocolFeatures);
    case Request::kSetProtocolFeatures: {
      uint64_t f = msg.as<uint64_t>();
      if (f & ~kOfferedProtocolFeatures)
        return fail("protocol features {:#x} were not offered", f & ~kOfferedProtocolFeatures);
      protocol_features_ = f;
      return Reply();
    }
    case Request::kSetOwner:
      return Reply();
    case Request::kResetOwner:
      // Deprecated; the spec recommends treating it as "disable all rings".
      stop_all_rings();
      return Reply();
    case Request::kGetQueueNum:
      return bytes_of(uint64_t{device_.num_queues()});
    case Request::kSetMemTable:
      SKIFF_TRY_VOID(set_mem_table(msg));
      return Reply();
    case Request::kSetVringNum: {
      auto s = msg.as<VringState>();
      Ring* r = SKIFF_TRY(ring_at(s.index, "SET_VRING_NUM"));
      if (r->worker) return fail("ring {} is running", s.index);
      const virtio::Queue* q = device_.queue(static_cast<uint16_t>(s.index));
      if (s.num == 0 || (s.num & (s.num - 1)) != 0 || s.num > q->max_size())
        return fail("ring {} size {} is not a power of 2 in [1, {}]", s.index, s.num,
                    q->max_size());
      r->num = s.num;
      return Reply();
    }
    case Request::kSetVringAddr: {
      auto a = msg.as<VringAddr>();
      Ring* r = SKIFF_TRY(ring_at(a.index, "SET_VRING_ADDR"));
      if (r->worker) return fail("ring {} is running", a.index);
      if (a.flags != 0)
        return fail("ring {} flags {:#x}: dirty logging is not offered", a.index, a.flags);
      r->addr = a;  // translated when the ring starts (the table may change first)
      return Reply();
    }
    case Request::kSetVringBase: {
      auto s = msg.as<VringState>();
      Ring* r = SKIFF_TRY(ring_at(s.index, "SET_VRING_BASE"));
      if (r->worker) return fail("ring {} is running", s.index);
      if (s.num > 0xffff) return fail("ring {} base {} is not a 16-bit ring index", s.index, s.num);
      r->base = static_cast<uint16_t>(s.num);
      return Reply();
    }
    case Request::kGetVringBase: {
      auto s = msg.as<VringState>();
      Ring* r = SKIFF_TRY(ring_at(s.index, "GET_VRING_BASE"));
      uint16_t base = r->worker ? stop_ring(static_cast<uint16_t>(s.index)) : r->base;
      r->kick.reset();  // the ring restarts only with a new SET_VRING_KICK
      return bytes_of(VringState{s.index, base});
    }
    case Request::kSetVringKick:
    case Request::kSetVringCall:
    case Request::kSetVringErr:
      SKIFF_TRY_VOID(set_vring_fd(msg, req));
      return Reply();
    case Request::kSetVringEnable: {
      auto s = msg.as<VringState>();
      Ring* r = SKIFF_TRY(ring_at(s.index, "SET_VRING_ENABLE"));
      if (!(acked_features_ & virtio::feature_bit(kFeatureProtocolFeatures)) && features_set_)
        return fail("SET_VRING_ENABLE without VHOST_USER_F_PROTOCOL_FEATURES");
      if (s.num > 1) return fail("ring {} enable value {} is not 0 or 1", s.index, s.num);
      r->enable_set = true;
      r->enabled.store(s.num == 1, std::memory_order_release);
      device_.set_queue_enabled(static_cast<uint16_t>(s.index), s.num == 1);
      if (s.num == 1 && r->worker) r->worker->wake();
      return Reply();
    }
    case Request::kGetConfig:
      return get_config(msg);
    case Request::kSetConfig:
      SKIFF_TRY_VOID(set_config(msg, ack_status));
      return Reply();
    default:
      return fail("request {} is not supported", msg.header.request);
  }
}

Result<> VhostUserBackend::set_mem_table(Message& msg) {
  uint32_t count;
  std::memcpy(&count, msg.payload.data(), sizeof count);
  if (count == 0 || count > kMaxMemRegions)
    return fail("memory table has {} regions, want 1..{}", count, kMaxMemRegions);
  size_t want = kMemTableHeaderBytes + count * sizeof(MemoryRegionDesc);
  if (msg.payload.size() != want)
    return fail("memory table of {} regions is {} bytes, want {}", count, msg.payload.size(), want);
  std::vector<MemoryRegionDesc> regions(count);
  std::memcpy(regions.data(), msg.payload.data() + kMemTableHeaderBytes,
              count * sizeof(MemoryRegionDesc));
  auto table = std::make_unique<MemoryTable>(SKIFF_TRY(MemoryTable::map(regions, msg.fds)));

  // Running rings move to the new table: stop them (keeping their position),
  // swap, start them again with their addresses translated anew.
  std::vector<uint16_t> running;
  for (uint16_t i = 0; i < rings_.size(); ++i) {
    if (!rings_[i]->worker) continue;
    rings_[i]->base = stop_ring(i);
    running.push_back(i);
  }
  memory_ = std::move(table);
  for (uint16_t i : running) SKIFF_TRY_VOID(start_ring(i));
  return {};
}

Result<> VhostUserBackend::set_vring_fd(Message& msg, Request which) {
  uint64_t v = msg.as<uint64_t>();
  if (v & ~(kVringIndexMask | kVringNoFdFlag))
    return fail("payload {:#x} has bits beyond the ring index and the no-fd flag", v);
  uint32_t index = static_cast<uint32_t>(v & kVringIndexMask);
  Ring* r = SKIFF_TRY(ring_at(index, request_name(static_cast<uint32_t>(which))));
  bool no_fd = (v & kVringNoFdFlag) != 0;
  if (no_fd && !msg.fds.empty()) return fail("ring {}: no-fd flag set but an fd was sent", index);
  if (!no_fd && msg.fds.size() != 1)
    return fail("ring {}: want one file descriptor, got {}", index, msg.fds.size());
  Fd fd = no_fd ? Fd() : std::move(msg.fds[0]);

  switch (which) {
    case Request::kSetVringKick: {
      // Polling mode (no kick fd) is not offered: a ring must be kickable.
      if (no_fd) return fail("ring {}: polling without a kick fd is not supported", index);
      auto i16 = static_cast<uint16_t>(index);
      if (r->worker) r->base = stop_ring(i16);
      r->kick = std::move(fd);
      return start_ring(i16);
    }
    case Request::kSetVringCall: {
      std::lock_guard lock(r->call_mu);
      r->call = std::move(fd);  // none: the front end polls the used ring
      return {};
    }
    default: {
      std::lock_guard lock(r->call_mu);
      r->err = std::move(fd);
      return {};
    }
  }
}

Result<VhostUserBackend::Reply> VhostUserBackend::get_config(const Message& msg) {
  auto h = msg.as<ConfigHeader>();
  if (h.size != msg.payload.size() - sizeof h || h.size > kMaxConfigBytes)
    return fail("config header size {} does not match the {}-byte payload", h.size,
                msg.payload.size());
  std::vector<uint8_t> out(sizeof h + h.size);
  // "back-end uses zero length of payload to indicate an error"
  if (!device_.read_config(h.offset, std::span(out).subspan(sizeof h)))
    return std::vector<uint8_t>{};
  std::memcpy(out.data(), &h, sizeof h);
  return out;
}

Result<> VhostUserBackend::set_config(const Message& msg, uint64_t& ack_status) {
  auto h = msg.as<ConfigHeader>();
  if (h.size != msg.payload.size() - sizeof h || h.size > kMaxConfigBytes)
    return fail("config header size {} does not match the {}-byte payload", h.size,
                msg.payload.size());
  // A refused write (read-only field) is the driver's business, not a
  // protocol error: answer failure, keep the connection.
  if (auto r = device_.write_config(h.offset, std::span(msg.payload).subspan(sizeof h)); !r) {
    LOG_DEBUG("vhost-user: SET_CONFIG refused: {}", r.error().what());
    ack_status = 1;
  }
  return {};
}

Result<> VhostUserBackend::start_ring(uint16_t index) {
  Ring& r = *rings_[index];
  if (!memory_) return fail("ring {} started before SET_MEM_TABLE", index);
  if (!r.addr) return fail("ring {} started before SET_VRING_ADDR", index);
  if (r.num == 0) return fail("ring {} started before SET_VRING_NUM", index);
  const GuestMemory& mem = memory_->memory();
  uint64_t desc = SKIFF_TRY(memory_->user_to_guest(r.addr->desc_user_addr));
  uint64_t avail = SKIFF_TRY(memory_->user_to_guest(r.addr->avail_user_addr));
  uint64_t used = SKIFF_TRY(memory_->user_to_guest(r.addr->used_user_addr));

  uint64_t features = acked_features_ & ~virtio::feature_bit(kFeatureProtocolFeatures);
  bool first = !device_.activated();
  if (first) {
    device_.reset();
    device_.set_memory(&mem);
    device_.set_driver_features(features);
  }
  virtio::Queue& q = *device_.queue(index);
  q.reset();
  q.set_size(static_cast<uint16_t>(r.num));
  q.set_desc_table(desc);
  q.set_avail_ring(avail);
  q.set_used_ring(used);
  q.set_ready(true);
  // Checked here (size, alignment, every ring area inside one region) so
  // the error names this ring; the device's activate() repeats it.
  if (auto a = q.activate(mem, (features & virtio::feature_bit(virtio::kFeatureEventIdx)) != 0,
                          (features & virtio::feature_bit(virtio::kFeatureIndirectDesc)) != 0);
      !a) {
    q.reset();
    return context(a.error(), fmt::format("ring {}", index));
  }
  if (first) {
    // vhost-user has no status register: the device goes through the
    // driver's status sequence here (virtio 1.2 §3.1.1).
    device_.set_status(virtio::kStatusAcknowledge | virtio::kStatusDriver |
                       virtio::kStatusFeaturesOk | virtio::kStatusDriverOk);
    if (!(device_.status() & virtio::kStatusFeaturesOk) || !device_.activated()) {
      device_.reset();
      return fail("{} refused features {:#x}", device_.name(), features);
    }
  }
  // The used index lives in guest memory (§2.7.8); a restarted ring
  // continues from it and from the front end's avail base.
  uint16_t used_idx = SKIFF_TRY(mem.read_obj<uint16_t>(used + 2));
  q.set_ring_positions(r.base, used_idx);

  // Without protocol features a ring starts enabled ("Ring states").
  if (!(acked_features_ & virtio::feature_bit(kFeatureProtocolFeatures)) && !r.enable_set)
    r.enabled.store(true, std::memory_order_release);
  device_.set_queue_enabled(index, r.enabled.load(std::memory_order_acquire));
  std::string name = fmt::format("{}-q{}", device_.name(), index);
  std::vector<VringWorker::BackendFd> backend_fds;
  for (const virtio::BackendEvent& e : device_.backend_events())
    if (e.queue == index) backend_fds.push_back({e.fd, e.events});
  r.worker = SKIFF_TRY(VringWorker::start(
      std::move(name), r.kick.get(),
      [this, index] {
        if (rings_[index]->enabled.load(std::memory_order_acquire)) device_.process_queue(index);
      },
      backend_fds));
  return {};
}

uint16_t VhostUserBackend::stop_ring(uint16_t index) {
  Ring& r = *rings_[index];
  r.worker.reset();  // joins: no process_queue runs after this
  // Requests still in flight in the device's backend (io_uring) complete
  // now, so the base we return covers them and nothing writes guest memory
  // after the ring stopped (or the memory table changed).
  device_.stop_queue(index);
  virtio::Queue& q = *device_.queue(index);
  uint16_t next = q.next_avail();
  r.base = next;
  q.reset();
  bool any = false;
  for (auto& other : rings_) any |= other->worker != nullptr;
  // Last ring stopped: the device is idle; the next start renegotiates.
  if (!any) device_.reset();
  return next;
}

void VhostUserBackend::stop_all_rings() {
  for (uint16_t i = 0; i < rings_.size(); ++i)
    if (rings_[i]->worker) stop_ring(i);
}

void VhostUserBackend::reset() {
  stop_all_rings();
  device_.reset();
  device_.set_memory(nullptr);
  memory_.reset();
  for (auto& r : rings_) {
    r->num = 0;
    r->addr.reset();
    r->base = 0;
    r->kick.reset();
    {
      std::lock_guard lock(r->call_mu);
      r->call.reset();
      r->err.reset();
    }
    r->enabled.store(false);
    r->enable_set = false;
  }
  acked_features_ = 0;
  features_set_ = false;
  protocol_features_ = 0;
}

}  // namespace skiff::vhost_user

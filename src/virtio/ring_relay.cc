#include "virtio/ring_relay.h"

#include <sys/eventfd.h>

#include <atomic>

namespace skiff::virtio {

namespace {

uint16_t load_index(const uint16_t* p) {
  // The driver or the server writes it concurrently; acquire orders the
  // ring entries published before the index.
  return std::atomic_ref<uint16_t>(*const_cast<uint16_t*>(p)).load(std::memory_order_acquire);
}

}  // namespace

Result<RingRelay> RingRelay::create() {
  auto kick = SKIFF_TRY(EventFd::create(0, EFD_NONBLOCK));
  auto call = SKIFF_TRY(EventFd::create(0, EFD_NONBLOCK));
  auto err = SKIFF_TRY(EventFd::create(0, EFD_NONBLOCK));
  return RingRelay(std::move(kick), std::move(call), std::move(err));
}

Result<RingRelay::Addresses> RingRelay::addresses(const GuestMemory& mem, const Queue& q) {
  auto host = [&](uint64_t gpa, uint64_t len) -> uint64_t {
    auto s = mem.slice(gpa, len);
    return s ? reinterpret_cast<uint64_t>(s->data()) : 0;
  };
  Addresses a{host(q.desc_table(), desc_table_bytes(q.size())),
              host(q.used_ring(), used_ring_bytes(q.size())),
              host(q.avail_ring(), avail_ring_bytes(q.size()))};
  if (a.desc == 0 || a.used == 0 || a.avail == 0) return fail("ring areas are not guest RAM");
  return a;
}

void RingRelay::drain() {
  (void)call_.consume();
  (void)err_.consume();
}

void RingRelay::start(const Addresses& a, const Queue& q) {
  // idx is at offset 2 of the avail and the used ring (§2.7.6, §2.7.8).
  avail_idx_ = reinterpret_cast<const uint16_t*>(a.avail + 2);
  used_idx_ = reinterpret_cast<const uint16_t*>(a.used + 2);
  kicked_avail_ = q.next_avail();
  if (load_index(avail_idx_) != kicked_avail_) {
    kicked_avail_ = load_index(avail_idx_);
    kick_.signal();
  }
}

void RingRelay::stop() {
  avail_idx_ = used_idx_ = nullptr;
}

Result<bool> RingRelay::relay(Queue& q) {
  if (err_.consume() != 0) return fail("the ring's server reported an error");
  if (!started()) return false;
  bool interrupt = false;
  if (call_.consume() != 0) {
    // Makes needs_notification answer "notify" for EVENT_IDX and re-read
    // NO_INTERRUPT otherwise: the server already decided.
    q.set_ring_positions(q.next_avail(), load_index(used_idx_));
    interrupt = true;
  }
  // A call event also runs this; a notification that found nothing new
  // needs no second kick.
  uint16_t avail = load_index(avail_idx_);
  if (avail != kicked_avail_) {
    kicked_avail_ = avail;
    kick_.signal();
  }
  return interrupt;
}

}  // namespace skiff::virtio

// VirtioNet's receive path (virtio 1.2 §5.1.6.3, §5.1.6.4): frames from the
// backend into the driver's receive buffers. See net.h for the design; the
// batched reads are in net_rx_batch.cc.

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "virtio/devices/net_rx.h"
#include "virtio/devices/net_wire.h"

namespace skiff::virtio {

namespace {

// Interrupt the driver at least this often while draining a busy backend,
// so it starts on the first frames while the device reads the rest.
constexpr unsigned kSignalEvery = 64;

}  // namespace

Result<> VirtioNet::handle_rx(uint16_t pair, Queue& queue) {
  // §5.1.6.5.5: nothing is received on pairs the driver has not enabled.
  if (pair >= active_pairs_.load(std::memory_order_acquire)) return {};
  return RxPass(*this, pair, queue).run();
}

VirtioNet::RxPass::RxPass(VirtioNet& net, uint16_t pair, Queue& queue)
    : net_(net),
      pair_(pair),
      queue_(queue),
      s_(*net.rx_[pair]),
      st_(net.stats_[pair]),
      index_(static_cast<uint16_t>(2 * pair)),
      mrg_(net.negotiated(netwire::kFMrgRxbuf)),
      guest_csum_(net.negotiated(netwire::kFGuestCsum)) {
  if (uint32_t gen = net.filter_generation_.load(std::memory_order_acquire);
      gen != s_.filter_generation) {
    std::lock_guard lock(net.filter_mu_);
    s_.filter = net.filter_;
    s_.filter_generation = net.filter_generation_.load(std::memory_order_relaxed);
  }
  filtering_ = s_.filter.rx_mode || s_.filter.vlan_filter;
}

Result<> VirtioNet::RxPass::run() {
  for (bool more = true; more;) {
    // Frames already read go first, in the order they came.
    if (s_.pending > 0)
      more = SKIFF_TRY(deliver_held());
    else if (s_.batch_pending())
      more = SKIFF_TRY(deliver_batch());
    else if (s_.avg_frame <= RxState::kBatchMaxFrame)
      more = SKIFF_TRY(read_batch());
    else
      more = SKIFF_TRY(read_direct());
  }
  if (unsignalled_ > 0) net_.signal_used(index_);
  return {};
}

Result<bool> VirtioNet::RxPass::pop(size_t k) {
  if (k == s_.chains.size()) {
    s_.chains.emplace_back();
    s_.lens.push_back(0);
  }
  if (!SKIFF_TRY(queue_.pop_into(s_.chains[k]))) return false;
  const DescriptorChain& c = s_.chains[k];
  // §5.1.6.3: receive buffers are device-writable and (§5.1.6.3.1) hold at
  // least the header.
  if (c.readable_bytes() != 0)
    return fail("receive chain {} has {} driver-readable bytes", c.head(), c.readable_bytes());
  if (c.writable_bytes() < net::kVnetHeaderBytes)
    return fail("receive chain {} of {} bytes cannot hold the {}-byte virtio-net header", c.head(),
                c.writable_bytes(), net::kVnetHeaderBytes);
  return true;
}

Result<size_t> VirtioNet::RxPass::pop_for(size_t have, uint64_t need) {
  size_t k = have;
  while (need > 0) {
    if (!mrg_ && k > 0) break;
    if (!SKIFF_TRY(pop(k))) break;
    s_.lens[k] = std::min<uint64_t>(need, s_.chains[k].writable_bytes());
    need -= s_.lens[k];
    ++k;
  }
  if (need > 0) {
    unpop(k - have);
    return size_t{0};
  }
  return k - have;
}

void VirtioNet::RxPass::unpop(size_t count) {
  if (count == 0) return;
  queue_.set_ring_positions(static_cast<uint16_t>(queue_.next_avail() - count), queue_.next_used());
}

Result<> VirtioNet::RxPass::complete(size_t count, size_t n) {
  netwire::Header hdr;
  auto hdr_bytes = std::span(reinterpret_cast<uint8_t*>(&hdr), sizeof hdr);
  BufferList first = s_.chains[0].writable();
  (void)copy_from_buffers(first, 0, hdr_bytes);
  hdr.num_buffers = static_cast<uint16_t>(count);
  // §5.1.6.4.1: without GUEST_CSUM the flags must be zero (the backend
  // delivers complete checksums then, but may still mark DATA_VALID).
  if (!guest_csum_) hdr.flags = 0;
  (void)copy_to_buffers(first, 0, hdr_bytes);
  for (size_t i = 0; i < count; ++i)
    SKIFF_TRY_VOID(queue_.add_used(s_.chains[i].head(), static_cast<uint32_t>(s_.lens[i])));
  bump_counter(st_.rx_packets);
  bump_counter(st_.rx_bytes, n - net::kVnetHeaderBytes);
  if (++unsignalled_ == kSignalEvery) {
    net_.signal_used(index_);
    unsignalled_ = 0;
  }
  return {};
}

void VirtioNet::RxPass::copy_in(size_t first, size_t count, std::span<const uint8_t> from) {
  size_t at = 0;
  for (size_t i = first; i < first + count; ++i) {
    const size_t len = static_cast<size_t>(s_.lens[i]);
    (void)copy_to_buffers(s_.chains[i].writable(), 0, from.subspan(at, len));
    at += len;
  }
}

bool VirtioNet::RxPass::filtered_out(size_t n, const uint8_t* eth) const {
  return filtering_ && n >= net::kVnetHeaderBytes + 16 && !s_.filter.accepts(std::span(eth, 16));
}

bool VirtioNet::RxPass::pass(size_t n) {
  return net_.pass_rate_limit(net_.rx_throttle_, pair_, n - net::kVnetHeaderBytes,
                              st_.rx_throttled);
}

void VirtioNet::RxPass::note_frame_size(size_t n) {
  s_.avg_frame = (3 * s_.avg_frame + n) / 4;
  if (mrg_) s_.target = std::max(RxState::kMinTarget, (3 * s_.target + n) / 4);
}

Result<bool> VirtioNet::RxPass::deliver_held() {
  // Once the rate limiter and the buffers allow.
  if (!s_.pending_charged) {
    if (!pass(s_.pending)) return false;  // its timer resumes the queue
    s_.pending_charged = true;
  }
  size_t count = SKIFF_TRY(pop_for(0, s_.pending));
  if (count == 0) return false;  // still not enough: wait for the driver
  copy_in(0, count, std::span(s_.spill).first(s_.pending));
  SKIFF_TRY_VOID(complete(count, s_.pending));
  s_.pending = 0;
  s_.pending_charged = false;
  return true;
}

Result<bool> VirtioNet::RxPass::read_direct() {
  // Gather chains for a frame of the expected size, straight into iov.
  s_.iov.clear();
  s_.spans.clear();
  size_t popped = 0;
  uint64_t cap = 0;
  while ((mrg_ ? cap < s_.target : popped == 0) && s_.iov.size() < net::kMaxIov - 1) {
    if (!SKIFF_TRY(pop(popped))) break;
    uint64_t took = 0;
    for (auto b : s_.chains[popped].writable()) {
      if (s_.iov.size() == net::kMaxIov - 1) break;
      s_.iov.push_back({b.data(), b.size()});
      s_.spans.push_back(b);
      took += b.size();
    }
    s_.lens[popped++] = took;
    cap += took;
  }
  if (popped == 0) return false;  // no buffers: the driver's next rx notification resumes
  s_.iov.push_back({s_.spill.data(), s_.spill.size()});

  auto got = net_.backend_->receive(pair_, s_.iov);
  if (!got || *got == 0) {
    unpop(popped);
    if (!got) {
      // The host side failed, not the driver: count it, keep the device.
      drop();
      LOG_DEBUG("virtio net: {}", got.error().what());
    }
    return false;
  }
  const size_t n = *got;
  note_frame_size(n);
  if (n < net::kVnetHeaderBytes) {  // not a frame (a tap never does this)
    unpop(popped);
    drop();
    return true;
  }
  if (filtering_ && cap >= net::kVnetHeaderBytes + 16) {
    // The filter looks at the Ethernet header, in the gathered buffers
    // (tiny ones let the frame pass unfiltered).
    uint8_t eth[16];
    (void)copy_from_buffers(s_.spans, net::kVnetHeaderBytes, eth);
    if (filtered_out(n, eth)) {
      unpop(popped);
      drop();
      return true;
    }
  }

  // The frame ran into the spill buffer if n > cap: bytes [cap, n) are at
  // spill[0].
  if (n > cap && (!mrg_ || n >= s_.spill.size())) {
    // One chain per frame and it was too small (§5.1.6.3.1 asks the driver
    // for buffers that fit), or a frame beyond any valid size (cut short
    // if it filled the spill buffer): drop it.
    unpop(popped);
    drop();
    return true;
  }
  // Moves the frame wholly into spill (the gathered buffers hold its first
  // `cap` bytes), so the chains can go back to the ring.
  auto hold = [&] {
    if (n > cap) std::memmove(s_.spill.data() + cap, s_.spill.data(), n - static_cast<size_t>(cap));
    (void)copy_from_buffers(s_.spans, 0,
                            std::span(s_.spill).first(std::min(n, static_cast<size_t>(cap))));
    s_.pending = n;
  };
  if (!pass(n)) {
    // Over the rate: keep the frame, give the chains back; the limiter's
    // timer (a BackendEvent of this queue) resumes.
    hold();
    s_.pending_charged = false;
    unpop(popped);
    return false;
  }

  if (n <= cap) {
    // The common case: the frame is in the guest's buffers already. Chains
    // it did not reach go back.
    size_t used = 0;
    for (uint64_t left = n; left > 0; ++used) {
      s_.lens[used] = std::min(s_.lens[used], left);
      left -= s_.lens[used];
    }
    unpop(popped - used);
    SKIFF_TRY_VOID(complete(used, n));
    return true;
  }

  size_t overflow = n - static_cast<size_t>(cap);
  size_t more = SKIFF_TRY(pop_for(popped, overflow));
  if (more > 0) {
    copy_in(popped, more, std::span(s_.spill).first(overflow));
    SKIFF_TRY_VOID(complete(popped + more, n));
    return true;
  }
  // Not enough buffers posted: keep the whole frame in spill, give every
  // chain back and wait for the driver to post more.
  hold();
  s_.pending_charged = true;
  unpop(popped);
  return false;
}

}  // namespace skiff::virtio

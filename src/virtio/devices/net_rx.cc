// VirtioNet's receive path (virtio 1.2 §5.1.6.3, §5.1.6.4): frames from the
// backend into the driver's receive buffers. See net.h for the design.

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

// Gives back the last `count` chains popped (the ring still holds them).
void unpop(Queue& queue, size_t count) {
  if (count == 0) return;
  queue.set_ring_positions(static_cast<uint16_t>(queue.next_avail() - count), queue.next_used());
}

}  // namespace

Result<> VirtioNet::handle_rx(uint16_t pair, Queue& queue) {
  // §5.1.6.5.5: nothing is received on pairs the driver has not enabled.
  if (pair >= active_pairs_.load(std::memory_order_acquire)) return {};
  RxState& s = *rx_[pair];
  NetQueueStats& st = stats_[pair];
  const uint16_t index = static_cast<uint16_t>(2 * pair);
  if (uint32_t gen = filter_generation_.load(std::memory_order_acquire);
      gen != s.filter_generation) {
    std::lock_guard lock(filter_mu_);
    s.filter = filter_;
    s.filter_generation = filter_generation_.load(std::memory_order_relaxed);
  }
  const bool mrg = negotiated(netwire::kFMrgRxbuf);
  const bool guest_csum = negotiated(netwire::kFGuestCsum);
  const bool filtering = s.filter.rx_mode || s.filter.vlan_filter;
  unsigned unsignalled = 0;

  // Pops one receive chain into s.chains[k]; false if none is available.
  auto pop = [&](size_t k) -> Result<bool> {
    if (k == s.chains.size()) {
      s.chains.emplace_back();
      s.lens.push_back(0);
    }
    if (!SKIFF_TRY(queue.pop_into(s.chains[k]))) return false;
    const DescriptorChain& c = s.chains[k];
    // §5.1.6.3: receive buffers are device-writable and (§5.1.6.3.1) hold
    // at least the header.
    if (c.readable_bytes() != 0)
      return fail("receive chain {} has {} driver-readable bytes", c.head(), c.readable_bytes());
    if (c.writable_bytes() < net::kVnetHeaderBytes)
      return fail("receive chain {} of {} bytes cannot hold the {}-byte virtio-net header",
                  c.head(), c.writable_bytes(), net::kVnetHeaderBytes);
    return true;
  };

  // Pops chains after the first `have` until they hold `need` more bytes;
  // sets s.lens to what each takes. Returns the number of chains popped, or
  // 0 if the ring ran out (they are given back).
  auto pop_for = [&](size_t have, uint64_t need) -> Result<size_t> {
    size_t k = have;
    while (need > 0) {
      if (!mrg && k > 0) break;
      if (!SKIFF_TRY(pop(k))) break;
      s.lens[k] = std::min<uint64_t>(need, s.chains[k].writable_bytes());
      need -= s.lens[k];
      ++k;
    }
    if (need > 0) {
      unpop(queue, k - have);
      return size_t{0};
    }
    return k - have;
  };

  // Hands `count` chains to the driver (s.lens bytes each) for a frame of
  // `n` bytes, writing num_buffers into the header (§5.1.6.4).
  auto complete = [&](size_t count, size_t n) -> Result<> {
    netwire::Header hdr;
    auto hdr_bytes = std::span(reinterpret_cast<uint8_t*>(&hdr), sizeof hdr);
    BufferList first = s.chains[0].writable();
    (void)copy_from_buffers(first, 0, hdr_bytes);
    hdr.num_buffers = static_cast<uint16_t>(count);
    // §5.1.6.4.1: without GUEST_CSUM the flags must be zero (the backend
    // delivers complete checksums then, but may still mark DATA_VALID).
    if (!guest_csum) hdr.flags = 0;
    (void)copy_to_buffers(first, 0, hdr_bytes);
    for (size_t i = 0; i < count; ++i)
      SKIFF_TRY_VOID(queue.add_used(s.chains[i].head(), static_cast<uint32_t>(s.lens[i])));
    bump_counter(st.rx_packets);
    bump_counter(st.rx_bytes, n - net::kVnetHeaderBytes);
    if (++unsignalled == kSignalEvery) {
      signal_used(index);
      unsignalled = 0;
    }
    return {};
  };

  // Copies s.spill[from, from + len) into chains [first, first + count).
  auto copy_spill = [&](size_t first, size_t count, size_t from) {
    for (size_t i = first; i < first + count; ++i) {
      (void)copy_to_buffers(s.chains[i].writable(), 0,
                            std::span(s.spill).subspan(from, static_cast<size_t>(s.lens[i])));
      from += static_cast<size_t>(s.lens[i]);
    }
  };

  // Moves a frame of `n` bytes read into the gathered buffers (first `cap`
  // bytes) and the spill buffer (the rest, at spill[0]) wholly into spill,
  // so the chains can go back to the ring.
  auto hold = [&](size_t n, uint64_t cap) {
    if (n > cap) std::memmove(s.spill.data() + cap, s.spill.data(), n - static_cast<size_t>(cap));
    size_t in_chains = std::min(n, static_cast<size_t>(cap));
    (void)copy_from_buffers(s.spans, 0, std::span(s.spill).first(in_chains));
    s.pending = n;
  };
  auto pass = [&](size_t n) {
    return pass_rate_limit(rx_throttle_, pair, n - net::kVnetHeaderBytes, st.rx_throttled);
  };

  for (;;) {
    // A frame kept from an earlier call goes first, once the rate limiter
    // and the buffers allow.
    if (s.pending > 0) {
      if (!s.pending_charged) {
        if (!pass(s.pending)) break;  // its timer resumes the queue
        s.pending_charged = true;
      }
      size_t count = SKIFF_TRY(pop_for(0, s.pending));
      if (count == 0) break;  // still not enough: wait for the driver
      copy_spill(0, count, 0);
      SKIFF_TRY_VOID(complete(count, s.pending));
      s.pending = 0;
      s.pending_charged = false;
      continue;
    }

    // Gather chains for a frame of the expected size, straight into iov.
    s.iov.clear();
    s.spans.clear();
    size_t popped = 0;
    uint64_t cap = 0;
    while ((mrg ? cap < s.target : popped == 0) && s.iov.size() < net::kMaxIov - 1) {
      if (!SKIFF_TRY(pop(popped))) break;
      uint64_t took = 0;
      for (auto b : s.chains[popped].writable()) {
        if (s.iov.size() == net::kMaxIov - 1) break;
        s.iov.push_back({b.data(), b.size()});
        s.spans.push_back(b);
        took += b.size();
      }
      s.lens[popped++] = took;
      cap += took;
    }
    if (popped == 0) break;  // no buffers: the driver's next rx notification resumes
    s.iov.push_back({s.spill.data(), s.spill.size()});

    auto got = backend_->receive(pair, s.iov);
    if (!got || *got == 0) {
      unpop(queue, popped);
      if (!got) {
        // The host side failed, not the driver: count it, keep the device.
        bump_counter(st.rx_dropped);
        LOG_DEBUG("virtio net: {}", got.error().what());
      }
      break;
    }
    const size_t n = *got;
    if (mrg) s.target = std::max(RxState::kMinTarget, (3 * s.target + n) / 4);

    if (n < net::kVnetHeaderBytes) {  // not a frame (a tap never does this)
      unpop(queue, popped);
      bump_counter(st.rx_dropped);
      continue;
    }
    // The filter looks at the Ethernet header, which sits in the gathered
    // buffers unless they are tiny (then the frame passes unfiltered).
    if (filtering && n >= net::kVnetHeaderBytes + 16 && cap >= net::kVnetHeaderBytes + 16) {
      uint8_t eth[16];
      (void)copy_from_buffers(s.spans, net::kVnetHeaderBytes, eth);
      if (!s.filter.accepts(eth)) {
        unpop(queue, popped);
        bump_counter(st.rx_dropped);
        continue;
      }
    }

    // The frame ran into the spill buffer if n > cap: bytes [cap, n) are at
    // spill[0].
    if (n > cap && (!mrg || n > s.spill.size())) {
      // One chain per frame and it was too small (§5.1.6.3.1 asks the driver
      // for buffers that fit), or a frame beyond any valid size: drop it.
      unpop(queue, popped);
      bump_counter(st.rx_dropped);
      continue;
    }
    if (!pass(n)) {
      // Over the rate: keep the frame, give the chains back; the limiter's
      // timer (a BackendEvent of this queue) resumes.
      hold(n, cap);
      s.pending_charged = false;
      unpop(queue, popped);
      break;
    }

    if (n <= cap) {
      // The common case: the frame is in the guest's buffers already. Chains
      // it did not reach go back.
      size_t used = 0;
      for (uint64_t left = n; left > 0; ++used) {
        s.lens[used] = std::min(s.lens[used], left);
        left -= s.lens[used];
      }
      unpop(queue, popped - used);
      SKIFF_TRY_VOID(complete(used, n));
      continue;
    }

    size_t overflow = n - static_cast<size_t>(cap);
    size_t more = SKIFF_TRY(pop_for(popped, overflow));
    if (more > 0) {
      copy_spill(popped, more, 0);
      SKIFF_TRY_VOID(complete(popped + more, n));
      continue;
    }
    // Not enough buffers posted: keep the whole frame in spill, give every
    // chain back and wait for the driver to post more.
    hold(n, cap);
    s.pending_charged = true;
    unpop(queue, popped);
    break;
  }
  if (unsignalled > 0) signal_used(index);
  return {};
}

}  // namespace skiff::virtio

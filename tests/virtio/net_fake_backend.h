// Test helper: a NetBackend over in-memory frame queues (header included),
// recording what was sent and the offload / queue-pair state the device set.
#pragma once

#include <cstring>
#include <deque>
#include <vector>

#include "net/net_backend.h"

namespace skiff::virtio::testing {

struct FakeNetBackend final : net::NetBackend {
  explicit FakeNetBackend(uint16_t pairs)
      : pairs_(pairs), rx(pairs), sent(pairs), enabled(pairs, true) {}

  uint16_t num_queue_pairs() const override { return pairs_; }
  unsigned supported_offloads() const override { return supported; }
  int rx_event_fd(uint16_t pair) const override {
    return pair < event_fds.size() ? event_fds[pair] : -1;
  }
  int tx_event_fd(uint16_t pair) const override {
    return pair < tx_event_fds.size() ? tx_event_fds[pair] : -1;
  }
  Result<size_t> receive(uint16_t pair, std::span<const iovec> iov) override {
    ++receives;
    if (rx[pair].empty()) return size_t{0};
    std::vector<uint8_t> f = std::move(rx[pair].front());
    rx[pair].pop_front();
    if (fail_receives > 0) {  // the frame is lost on the host side
      --fail_receives;
      return fail_with(EIO, "fake receive failure");
    }
    size_t done = 0;
    for (const iovec& v : iov) {
      size_t n = std::min(v.iov_len, f.size() - done);
      std::memcpy(v.iov_base, f.data() + done, n);
      done += n;
      if (done == f.size()) break;
    }
    // A frame cut short: what fit (as Linux's tap), or its whole length
    // (which NetBackend allows too).
    return clamp_receives ? done : f.size();
  }
  Result<bool> send(uint16_t pair, std::span<const iovec> iov) override {
    if (iov.size() > net::kMaxIov) return fail("too many iovecs");
    if (refuse_sends > 0) {
      --refuse_sends;
      return false;
    }
    if (fail_sends) return fail("fake send failure");
    if (accept_before_full == 0) return false;
    if (accept_before_full > 0) --accept_before_full;
    std::vector<uint8_t> f;
    for (const iovec& v : iov) {
      auto* p = static_cast<const uint8_t*>(v.iov_base);
      f.insert(f.end(), p, p + v.iov_len);
    }
    sent[pair].push_back(std::move(f));
    return true;
  }
  // Counts the batch, then receives frame by frame (the default).
  Result<size_t> receive_batch(uint16_t pair, std::span<const std::span<uint8_t>> bufs,
                               std::span<int> sizes) override {
    ++receive_batches;
    return NetBackend::receive_batch(pair, bufs, sizes);
  }
  // Records each batch's size, then sends it frame by frame (the default).
  Result<size_t> send_batch(uint16_t pair, std::span<const std::span<const iovec>> frames,
                            std::span<int> refused) override {
    batches.push_back(frames.size());
    return NetBackend::send_batch(pair, frames, refused);
  }
  Result<> set_offloads(unsigned o) override {
    if (o & ~supported) return fail("unsupported offloads");
    offloads = o;
    return {};
  }
  Result<> set_queue_pair_enabled(uint16_t pair, bool on) override {
    enabled[pair] = on;
    return {};
  }

  uint16_t pairs_;
  unsigned supported = net::kOffloadCsum | net::kOffloadTso4 | net::kOffloadTso6 |
                       net::kOffloadTsoEcn | net::kOffloadUfo;
  unsigned offloads = 0;
  std::vector<std::deque<std::vector<uint8_t>>> rx;
  std::vector<std::vector<std::vector<uint8_t>>> sent;
  std::vector<bool> enabled;
  std::vector<int> event_fds;     // rx_event_fd() per pair
  std::vector<int> tx_event_fds;  // tx_event_fd() per pair
  std::vector<size_t> batches;    // frames per send_batch() call
  int receives = 0;               // receive() calls (a batch makes one per frame)
  int receive_batches = 0;        // receive_batch() calls
  int fail_receives = 0;          // the next N frames received are lost (EIO)
  bool clamp_receives = false;    // a frame cut short reports the bytes placed
  int refuse_sends = 0;           // the next N sends find the backend full
  int accept_before_full = -1;    // >= 0: full after taking this many more
  bool fail_sends = false;
};

}  // namespace skiff::virtio::testing

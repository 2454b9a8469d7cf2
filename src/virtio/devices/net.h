// VirtioNet: virtio-net (virtio 1.2 §5.1) over a net::NetBackend (a tap in
// production), the same code in skiff (virtio-pci) and skiff-vhost
// (vhost-user).
//
// Queues: receiveq/transmitq pairs 0..N-1 at indices 2i / 2i+1, then the
// control queue (when NetOptions::control_queue) at 2N if MQ is negotiated,
// else at 2 (§5.1.2). num_queues() is 2N + 1 (or 2N without a control
// queue).
//
// Offered: MAC, STATUS (link always up), MRG_RXBUF, CSUM, GUEST_CSUM, and
// the segmentation offloads the backend supports (supported_offloads()):
// HOST_/GUEST_TSO4, TSO6, ECN with TSO, HOST_/GUEST_UFO with UFO. With a
// control queue also CTRL_VQ, CTRL_RX, CTRL_RX_EXTRA, CTRL_VLAN,
// CTRL_MAC_ADDR, CTRL_GUEST_OFFLOADS, and MQ when N > 1 (net_ctrl.h answers
// the commands). Without a control queue (vhost-user: the front end, e.g.
// QEMU, keeps the control queue and its filter itself) only the data-path
// features, plus MQ when N > 1; then every pair is active from the start.
// The backend is told which guest offloads were negotiated (TUNSETOFFLOAD
// for a tap) at activation and on CTRL_GUEST_OFFLOADS_SET.
//
// Data path (net_rx.cc, net_rx_batch.cc, net.cc): rx fills one chain per
// frame, or with MRG_RXBUF as many chains as the frame needs (num_buffers,
// §5.1.6.4). While recent frames are small (RxState::kBatchMaxFrame), rx
// reads up to kMaxRecvBatch of them with one receive_batch() (a tap: one
// system call) into the queue's slots and copies each into the chains; the
// batch grows while batches come back full. Larger frames are read with
// readv straight into the gathered chains, no copy; a frame larger than
// them lands in a per-queue spill buffer and is copied on. Either way a
// frame the driver has no buffers for yet is kept (in its slot, or in the
// spill buffer) until it has: no loss. rx drains the backend until it is
// empty or the buffers run out (the driver's next rx notification
// resumes). No allocation per frame. tx pops up to kMaxSendBatch available chains and
// hands them to the backend's send_batch() together (a tap: one system
// call per batch); frames up to kTxCopyMaxBytes are copied into one buffer
// each, larger ones go out with writev from guest memory. The vnet header
// the driver sends is copied out, checked and sent from that copy (the
// driver cannot change it after the check). If the backend cannot take a
// frame (EAGAIN: only a tap with a limited sndbuf) that chain and the
// ones after it stay available, in order; the backend's tx_event_fd (a
// BackendEvent watched for EPOLLOUT) or the next tx notification retries.
//
// Hostile driver: NEEDS_RESET for a tx chain with writable buffers or
// shorter than the 12-byte header, an rx chain with readable buffers or (with
// MRG_RXBUF) shorter than the header, a control request without room for the
// ack or without its 2-byte class/command. Dropped and counted (tx_dropped),
// the chain returned: tx frames shorter than an Ethernet header or longer
// than kMaxFrameBytes, headers asking for an offload that was not negotiated
// (gso_type, NEEDS_CSUM) or a checksum position beyond the frame. Without
// MRG_RXBUF, a frame larger than the rx chain is dropped (rx_dropped) and the
// chain reused.
//
// vhost-user's SET_VRING_ENABLE (set_queue_enabled()) on a pair's receive
// ring detaches that tap queue (TUNSETQUEUE IFF_DETACH_QUEUE) and enabling
// attaches it again, so the kernel never steers frames to a pair the front
// end has stopped; a ring that starts disabled starts detached.
//
// Rate limiting (NetOptions::rate_limiter, Cloud Hypervisor's semantics,
// net/rate_limiter.h): every queue pair gets a limiter per direction, each
// with the configured bytes and packets buckets (as Cloud Hypervisor does);
// a frame costs its length without the vnet header and one packet. A tx
// frame the limiter refuses stays available in the ring; an rx frame the
// limiter refuses, already read from the backend, is held where a frame
// waiting for buffers is (its batch slot, or the spill buffer) and the
// chains go back. Either way the queue stops, the limiter's timerfd is armed
// for when the tokens are back, and that timerfd is a BackendEvent of the
// queue, so the queue resumes by itself: delayed, never dropped. Frames the
// device drops or filters cost nothing.
//
// Not implemented: RSS / hash reporting, GUEST_ANNOUNCE, MTU, SPEED_DUPLEX,
// notification coalescing, save/restore.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "net/mac_address.h"
#include "net/net_backend.h"
#include "net/rate_limiter.h"
#include "virtio/buffers.h"
#include "virtio/device.h"
#include "virtio/devices/net_ctrl.h"
#include "virtio/devices/net_ctrl_queue.h"
#include "virtio/devices/net_wire.h"

namespace skiff::virtio {

inline constexpr uint32_t kVirtioIdNet = 1;  // VIRTIO_ID_NET

struct NetOptions {
  net::MacAddress mac;  // the caller picks one (MacAddress::random_local() if the user gave none)
  uint16_t queue_size = 256;
  // False for vhost-user back ends: the front end handles the control queue.
  bool control_queue = true;
  // Applied to each direction of each queue pair (see the header comment);
  // the default does not limit.
  net::RateLimiterConfig rate_limiter;
  // The limiters' time source (tests inject one).
  net::MonotonicClock clock = net::steady_now;
};

// Per-queue-pair counters, read from other threads (atomics). Each has one
// writer, the thread serving its queue, which bumps it with bump_counter():
// a plain load and store, not a locked read-modify-write (two of those per
// frame were a measurable part of the transmit path). The rx and tx halves
// sit on their own cache lines, as their queues are served by different
// threads.
struct NetQueueStats {
  alignas(64) std::atomic<uint64_t> rx_packets{0};
  std::atomic<uint64_t> rx_bytes{0};      // frame bytes, header excluded
  std::atomic<uint64_t> rx_dropped{0};    // too big for the chain, or filtered
  std::atomic<uint64_t> rx_throttled{0};  // times the rate limiter stopped rx
  alignas(64) std::atomic<uint64_t> tx_packets{0};
  std::atomic<uint64_t> tx_bytes{0};      // frame bytes, header excluded
  std::atomic<uint64_t> tx_dropped{0};    // malformed frames
  std::atomic<uint64_t> tx_errors{0};     // the backend refused the frame
  std::atomic<uint64_t> tx_throttled{0};  // times the rate limiter stopped tx
};

// Adds n to a counter that only the calling thread writes (NetQueueStats).
inline void bump_counter(std::atomic<uint64_t>& counter, uint64_t n = 1) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

class VirtioNet final : public VirtioDevice, private NetCtrlTarget {
 public:
  // One queue pair per backend queue pair.
  [[nodiscard]] static Result<std::unique_ptr<VirtioNet>> create(
      std::unique_ptr<net::NetBackend> backend, NetOptions options);
  ~VirtioNet() override;

  [[nodiscard]] uint16_t max_queue_pairs() const { return pairs_; }
  // Pairs the driver uses now (§5.1.6.5.5; 1 until VQ_PAIRS_SET).
  [[nodiscard]] uint16_t active_queue_pairs() const {
    return active_pairs_.load(std::memory_order_acquire);
  }
  [[nodiscard]] const NetQueueStats& stats(uint16_t pair) const { return stats_[pair]; }
  [[nodiscard]] net::NetBackend& backend() { return *backend_; }
  // The control queue's index for the negotiated features, or -1 if none.
  [[nodiscard]] int ctrl_queue_index() const;

  // {backend rx fd of pair i, receiveq i} for every pair that has one; with
  // rate limiting also each queue's limiter timerfd.
  [[nodiscard]] std::vector<BackendEvent> backend_events() const override;

 protected:
  [[nodiscard]] Result<> on_activate() override;
  void on_reset() override;
  void on_queue_enabled(uint16_t index, bool enabled) override;
  [[nodiscard]] Result<> handle_queue(uint16_t index, Queue& queue) override;
  [[nodiscard]] Result<> validate_features(uint64_t features) const override;

 private:
  struct RxState;  // net_rx.h
  class RxPass;
  // One direction of one queue pair under a rate limiter.
  struct Throttle {
    net::RateLimiter limiter;
    net::RateLimitTimer timer;
  };
  // One pair's transmit batch: up to kMaxSendBatch chains popped, checked
  // and handed to the backend's send_batch() together.
  struct TxState {
    std::vector<DescriptorChain> chains{net::kMaxSendBatch};
    std::array<netwire::Header, net::kMaxSendBatch> hdrs{};  // the checked headers
    std::array<uint64_t, net::kMaxSendBatch> frame_len{};
    std::array<size_t, net::kMaxSendBatch + 1> iov_start{};  // frame i: iov[start[i], start[i+1])
    std::array<std::span<const iovec>, net::kMaxSendBatch> frames;
    std::array<int, net::kMaxSendBatch> refused{};
    std::vector<iovec> iov;
    // Small frames, and chains of more than kMaxIov buffers, copied (one
    // frame per batch slot).
    std::vector<std::vector<uint8_t>> linear{net::kMaxSendBatch};
  };
  // Frames up to this size (header excluded) are copied into one buffer.
  static constexpr uint64_t kTxCopyMaxBytes = 2048;
  // Adds the chain in slot n (its header already in t.hdrs[n]) to t.iov.
  static void gather_tx_frame(TxState& t, size_t n);
  // Sends the n frames of the batch and gives their chains back; rewinds
  // the queue over those the backend could not take. False: it was full.
  [[nodiscard]] Result<bool> send_tx_batch(uint16_t pair, Queue& queue, size_t n);

  VirtioNet(std::unique_ptr<net::NetBackend> backend, NetOptions options, uint64_t features);
  [[nodiscard]] Result<> init_rate_limiting();
  // Takes a frame of `frame_bytes` (header excluded) from the limiter of
  // `throttles[pair]` if there is one; otherwise arms its timer and counts
  // the stop in `throttled`. True: the frame may go.
  [[nodiscard]] bool pass_rate_limit(std::vector<Throttle>& throttles, uint16_t pair,
                                     uint64_t frame_bytes, std::atomic<uint64_t>& throttled);
  [[nodiscard]] Result<> handle_rx(uint16_t pair, Queue& queue);
  [[nodiscard]] Result<> handle_tx(uint16_t pair, Queue& queue);
  [[nodiscard]] Result<> handle_ctrl(uint16_t index, Queue& queue);
  [[nodiscard]] Result<> apply_queue_pairs(uint16_t pairs);
  // NetCtrlTarget: the control queue's effects (net_ctrl_queue.h).
  [[nodiscard]] Result<> set_ctrl_queue_pairs(uint16_t pairs) override;
  [[nodiscard]] Result<> set_ctrl_guest_offloads(uint64_t features) override;
  void set_ctrl_mac(const net::MacAddress& mac) override;
  [[nodiscard]] std::unique_lock<std::mutex> lock_rx_filter() override;
  void rx_filter_changed() override;

  std::unique_ptr<net::NetBackend> backend_;
  NetOptions options_;
  uint16_t pairs_;
  std::atomic<uint16_t> active_pairs_{1};
  // Per pair: whether the transport has its receive ring enabled (vhost-user
  // SET_VRING_ENABLE; always true behind virtio-pci). Socket thread only.
  std::vector<uint8_t> rx_ring_enabled_;
  std::unique_ptr<NetQueueStats[]> stats_;
  std::vector<std::unique_ptr<RxState>> rx_;
  std::vector<TxState> tx_;
  std::vector<Throttle> rx_throttle_;  // per pair; empty: no rate limiting
  std::vector<Throttle> tx_throttle_;
  DescriptorChain ctrl_chain_;

  // The filter is written by the control queue's thread and read by every
  // rx thread: rx threads copy it when filter_generation_ moved, so the
  // per-frame check takes no lock.
  std::mutex filter_mu_;
  RxFilter filter_;
  std::atomic<uint32_t> filter_generation_{0};
};

}  // namespace skiff::virtio

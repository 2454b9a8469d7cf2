// Tap: a Linux tap interface as a NetBackend, one tap queue (one open fd of
// /dev/net/tun attached to the interface) per virtio-net queue pair.
//
// Every queue is opened IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, and with
// IFF_MULTI_QUEUE when more than one pair is asked for (the kernel then
// spreads received flows over the queues; Documentation/networking/
// tuntap.rst "Multiqueue tuntap interface"). A single-queue open of an
// existing interface tries IFF_MULTI_QUEUE first and falls back, so taps
// made with or without `ip tuntap add ... multi_queue` both work.
// The fds are non-blocking and close-on-exec; the vnet header size is set to
// kVnetHeaderBytes (TUNSETVNETHDRSZ; x86 is little endian, so the header's
// byte order is the kernel's default and TUNSETVNETLE is not needed).
//
// Offloads: open() probes TUNSETOFFLOAD once to learn which of CSUM, TSO4,
// TSO6, TSO_ECN and UFO this kernel accepts (UFO was removed and re-added
// over kernel versions), then turns them all off until set_offloads().
//
// Adopting fds (`fd=[3,4]` from a management stack): each must be a tap
// opened with IFF_NO_PI | IFF_VNET_HDR, all of the same interface
// (TUNGETIFF); they are made non-blocking and get the header size set.
//
// TapUse::kVhostNet: the kernel's vhost-net moves the frames, skiff only
// hands it the queue fds. Such a tap gets no io_uring rings and no second
// fd per queue (tx_event_fd() is -1), and must not be sent or received on.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "net/net_backend.h"
#include "net/tap_ring.h"

namespace skiff::net {

// Who moves the frames of a tap's queues.
enum class TapUse { kUserspace, kVhostNet };

class Tap final : public NetBackend {
 public:
  // Opens interface `name` (created if it does not exist, which needs
  // CAP_NET_ADMIN) with `queue_pairs` queues. Errors name the interface and
  // say what to do (e.g. recreate it with multi_queue).
  [[nodiscard]] static Result<std::unique_ptr<Tap>> open(const std::string& name,
                                                         uint16_t queue_pairs,
                                                         TapUse use = TapUse::kUserspace);
  // Takes ownership of already-open tap fds, one per queue pair.
  [[nodiscard]] static Result<std::unique_ptr<Tap>> adopt(std::vector<Fd> fds,
                                                          TapUse use = TapUse::kUserspace);

  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] int fd(uint16_t pair) const { return queues_[pair].get(); }
  // Whether send_batch() / receive_batch() go through io_uring on every
  // queue (false: frame by frame).
  [[nodiscard]] bool sends_in_batches() const { return all_working(send_rings_); }
  [[nodiscard]] bool receives_in_batches() const { return all_working(recv_rings_); }

  [[nodiscard]] uint16_t num_queue_pairs() const override {
    return static_cast<uint16_t>(queues_.size());
  }
  [[nodiscard]] unsigned supported_offloads() const override { return supported_offloads_; }
  [[nodiscard]] int rx_event_fd(uint16_t pair) const override { return fd(pair); }
  // A second fd of the queue (dup), so the same epoll can watch the queue
  // for EPOLLIN (rx_event_fd) and, apart, for EPOLLOUT: signalled when the
  // queue has room after send() / send_batch() found it full (they make
  // sure the kernel will), and when the interface comes up.
  [[nodiscard]] int tx_event_fd(uint16_t pair) const override {
    return pair < tx_wake_.size() ? tx_wake_[pair].get() : -1;
  }
  [[nodiscard]] Result<size_t> receive(uint16_t pair, std::span<const iovec> iov) override;
  // Through the queue's receiving TapRing (one system call per batch), or
  // frame by frame where io_uring is not available.
  [[nodiscard]] Result<size_t> receive_batch(uint16_t pair,
                                             std::span<const std::span<uint8_t>> bufs,
                                             std::span<int> sizes) override;
  [[nodiscard]] Result<bool> send(uint16_t pair, std::span<const iovec> iov) override;
  // Through the queue's sending TapRing (one system call per batch), or frame
  // by frame where io_uring is not available.
  [[nodiscard]] Result<size_t> send_batch(uint16_t pair,
                                          std::span<const std::span<const iovec>> frames,
                                          std::span<int> refused) override;
  [[nodiscard]] Result<> set_offloads(unsigned offloads) override;
  [[nodiscard]] Result<> set_queue_pair_enabled(uint16_t pair, bool enabled) override;

 private:
  Tap(std::string name, std::vector<Fd> queues, bool multi_queue)
      : name_(std::move(name)), queues_(std::move(queues)), multi_queue_(multi_queue) {}
  // Header size, non-blocking mode and the offload probe, for every queue;
  // for kUserspace also the rings and the tx_event_fd dups.
  [[nodiscard]] Result<> prepare(TapUse use);
  // After a write found queue `pair` full: makes the kernel signal
  // tx_event_fd once it has room (see tap.cc). True if it has room already.
  [[nodiscard]] bool arm_tx_event(uint16_t pair);
  // After a write found queue `pair` full: true if it still is (the
  // wakeup is armed: give up for now), false to try again. `idle` counts
  // the tries in a row that sent nothing.
  [[nodiscard]] bool still_full(uint16_t pair, int& idle);
  static constexpr int kFullRetries = 4;

  std::string name_;
  std::vector<Fd> queues_;
  std::vector<Fd> tx_wake_;  // tx_event_fd(): dups of queues_
  bool multi_queue_;
  unsigned supported_offloads_ = 0;
  static bool all_working(const std::vector<std::unique_ptr<TapRing>>& rings) {
    for (const auto& r : rings)
      if (r->broken()) return false;
    return !rings.empty();
  }
  // One per queue and direction, or none.
  std::vector<std::unique_ptr<TapRing>> send_rings_;
  std::vector<std::unique_ptr<TapRing>> recv_rings_;
};

}  // namespace skiff::net

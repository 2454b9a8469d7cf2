// TapRing: batched transmit and receive on one tap queue through io_uring.
//
// A tap has no sendmmsg or recvmmsg: one frame per system call, and the
// system call, not the copy, is most of a small frame's cost (bench/README.md
// "virtio-net": on the nested development host io_uring takes 64-byte frames
// about six times faster than write() in a loop, and reads them 2.5 times
// faster than read(), both on one CPU). The ring queues one request per
// frame and submits a batch with one io_uring_enter. Every request carries
// RWF_NOWAIT, so the kernel runs it inline and an empty (or full) tap
// completes it with -EAGAIN: without the flag, io_uring parks a read of an
// empty tap until a frame comes, even on a non-blocking fd.
//
// Transmit: the writes are linked (IOSQE_IO_LINK): they run in submission
// order, so frames leave in the guest's order, and a failed one cancels
// those after it (-ECANCELED). send() resubmits the cancelled rest after a
// refused frame and stops at -EAGAIN, so its result means the same as one
// send() per frame would have.
//
// Receive: the reads are not linked (a read shorter than its buffer, which
// every frame is, would cancel the rest of a chain), but the kernel issues
// them in submission order, each finishing before the next starts, so the
// frames land in the buffers in the order the tap queued them; a read that
// found the tap empty leaves its buffer unused.
//
// A kernel whose tap does not take RWF_NOWAIT (-EOPNOTSUPP) breaks the ring
// (the caller goes on frame by frame): without the flag io_uring would hold
// a read of an empty queue, or a write to a full one, until the tap is
// ready, and the caller would wait with it.
//
// Both return only once every request they submitted has completed: the
// caller's buffers are free again. If the ring itself fails (the kernel
// takes fewer requests than were queued, or waiting for a completion fails
// other than by a signal), the ring is broken for good: send() and
// receive() return what they know, in order, and the caller goes on
// another way. A broken ring is never submitted to again, so requests it
// never took cannot run later, nor can a late completion be mistaken for a
// new one.
//
// One ring per tap queue and direction, used by one thread at a time.
#pragma once

#include <liburing.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/result.h"

namespace skiff::net {

class TapRing {
 public:
  // A ring for up to kMaxSendBatch frames; fails where io_uring is not
  // available (kernel.io_uring_disabled, a seccomp filter, an old kernel).
  [[nodiscard]] static Result<std::unique_ptr<TapRing>> create();
  ~TapRing();
  TapRing(const TapRing&) = delete;
  TapRing& operator=(const TapRing&) = delete;

  // NetBackend::send_batch on `fd`: how many frames it took, in order.
  [[nodiscard]] size_t send(int fd, std::span<const std::span<const iovec>> frames,
                            std::span<int> refused);
  // NetBackend::receive_batch on `fd` (at most kMaxRecvBatch buffers): how
  // many buffers it tried, all of them unless the ring broke.
  [[nodiscard]] size_t receive(int fd, std::span<const std::span<uint8_t>> bufs,
                               std::span<int> sizes);
  // Whether the ring failed (see above); why, for the log.
  [[nodiscard]] bool broken() const { return !broken_why_.empty(); }
  [[nodiscard]] const std::string& broken_why() const { return broken_why_; }

 private:
  TapRing() = default;
  // Queues writes of frames[first..) (linked, in order).
  void queue_writes(int fd, std::span<const std::span<const iovec>> frames, size_t first);
  // Submits the `queued` requests and waits for every one the kernel took;
  // results[user_data] gets each result. Those it has none for keep
  // kUnknown (the ring broke).
  void run(size_t queued, std::span<int> results);
  static constexpr int kUnknown = 1 << 30;

  io_uring ring_{};
  std::string broken_why_;
};

}  // namespace skiff::net

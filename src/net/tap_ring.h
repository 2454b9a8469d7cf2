// TapRing: batched transmit on one tap queue through io_uring.
//
// A tap has no sendmmsg: writing frame by frame costs one system call per
// frame, and the system call, not the copy, is most of a small frame's cost
// (bench/README.md "virtio-net": on the nested development host io_uring
// takes 64-byte frames about six times faster than write() in a loop, both
// on one CPU). The ring queues one writev per frame and submits the batch
// with one io_uring_enter; the tap's fds are non-blocking, so the kernel
// runs each write inline and a full tap completes it with -EAGAIN rather
// than parking it on a worker thread.
//
// The writes are linked (IOSQE_IO_LINK): they run in submission order, so
// frames leave in the guest's order, and a failed one cancels those after
// it (-ECANCELED). send() resubmits the cancelled rest after a refused frame
// and stops at -EAGAIN, so its result means the same as one send() per
// frame would have. It returns only once every write it submitted has
// completed: the caller's buffers are free again.
//
// If the ring itself fails (the kernel takes fewer writes than were
// queued, or waiting for a completion fails other than by a signal), the
// ring is broken for good: send() returns the frames whose fate it knows,
// in order (as if the tap were full after them), and the caller sends the
// rest another way. A broken ring is never submitted to again, so writes it
// never took cannot go out later, nor can a late completion be mistaken for
// a new one. (The tap's fds are non-blocking, so every write the kernel took
// has finished inside io_uring_enter; none is left behind.)
//
// One ring per tap queue, used by that queue's transmit thread only.
#pragma once

#include <liburing.h>
#include <sys/uio.h>

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
  // Whether the ring failed (see above); why, for the log.
  [[nodiscard]] bool broken() const { return !broken_why_.empty(); }
  [[nodiscard]] const std::string& broken_why() const { return broken_why_; }

 private:
  TapRing() = default;
  // Submits frames[first..) and waits for every write the kernel took;
  // results[i] gets frame i's result (kUnknown where there is none, after
  // the ring broke).
  void run(int fd, std::span<const std::span<const iovec>> frames, size_t first,
           std::span<int> results);
  static constexpr int kUnknown = 1 << 30;

  io_uring ring_{};
  std::string broken_why_;
};

}  // namespace skiff::net

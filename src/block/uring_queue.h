// UringQueue: an io_uring instance (liburing) that carries out one device
// queue's disk I/O asynchronously. block/ knows nothing about virtio: the
// caller hands it numbered slots (virtio-blk uses the chain's head index)
// with the host file, offset and buffers of each request, and later takes
// back (slot, result) pairs.
//
// Design (issue 3, "raw image files through io_uring"):
//   - one ring per device queue, used by that queue's thread only, so no
//     locks; the submission depth is fixed at construction (= queue size);
//   - an eventfd is registered for completions (io_uring_register_eventfd);
//     the transport watches it and the device calls reap() when it fires;
//   - reads and writes are readv/writev straight on the caller's buffers
//     (the guest's memory): no copies, except with O_DIRECT when a buffer
//     is not aligned (see start_rw: then one aligned bounce buffer per slot,
//     at most kBounceChunk bytes, the request going in pieces);
//   - a short transfer is continued from where it stopped (resubmitted) until
//     the request is done; zero bytes (EOF, or a write that cannot progress)
//     fails the slot with -EIO;
//   - flush is fdatasync with IOSQE_IO_DRAIN: it starts only after every
//     transfer submitted before it on this ring has completed, so an
//     acknowledged flush covers the writes that preceded it;
//   - discard / write-zeroes are fallocate() (PUNCH_HOLE / ZERO_RANGE, with
//     KEEP_SIZE), one SQE per range, the slot finishing with the last one.
//   - cancel_and_wait() (device reset) cancels what can be cancelled and
//     waits for the rest; wait() (ring stop) just waits. Either way nothing
//     the kernel does for this ring touches the buffers once they return.
#pragma once

#include <liburing.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "block/disk_image.h"

namespace skiff {

class UringQueue {
 public:
  // Bytes of one bounce-buffer piece (unaligned O_DIRECT transfers).
  static constexpr size_t kBounceChunk = 1 << 20;

  struct Completion {
    uint32_t slot;
    int result;  // 0, or -errno
  };
  struct Range {
    uint64_t offset;
    uint64_t length;
  };

  // A ring for `slots` concurrent requests; `name` appears in errors.
  [[nodiscard]] static Result<std::unique_ptr<UringQueue>> create(uint32_t slots, std::string name);
  ~UringQueue();  // cancels and waits for whatever is still in flight
  UringQueue(const UringQueue&) = delete;
  UringQueue& operator=(const UringQueue&) = delete;

  [[nodiscard]] int event_fd() const { return event_.get(); }
  [[nodiscard]] uint32_t slots() const { return static_cast<uint32_t>(slots_.size()); }
  [[nodiscard]] uint32_t in_flight() const { return busy_; }
  [[nodiscard]] bool busy(uint32_t slot) const { return slots_[slot].busy; }

  // Would start_rw() need a bounce buffer for this transfer? (Only with
  // O_DIRECT alignment and an unaligned buffer.) The file offset and total
  // length must already be multiples of align.offset.
  [[nodiscard]] static bool needs_bounce(std::span<const iovec> iov, IoAlignment align);

  // Starts a read (into `iov`) or a write (from `iov`) of the iov's total
  // length at `at`. `iov` is copied; the buffers must stay valid until the
  // slot completes. Returns whether a bounce buffer is used.
  [[nodiscard]] Result<bool> start_rw(uint32_t slot, bool write, const HostExtent& at,
                                      std::span<const iovec> iov, IoAlignment align);
  // fdatasync(fd), after every earlier submission on this ring completed.
  [[nodiscard]] Result<> start_flush(uint32_t slot, int fd);
  // fallocate(fd, mode, range) for each range; `mode` is FALLOC_FL_*.
  [[nodiscard]] Result<> start_fallocate(uint32_t slot, int fd, int mode,
                                         std::span<const Range> ranges);

  // Hands everything prepared to the kernel (one io_uring_enter).
  [[nodiscard]] Result<> submit();

  // Reads the eventfd (edge-triggered watchers need it drained), then
  // collects finished slots into `out` (capacity >= slots()) and returns
  // how many. Short transfers are resubmitted, not returned.
  [[nodiscard]] size_t reap(std::span<Completion> out);

  // Blocks until at least one completion is ready (or nothing is in flight).
  [[nodiscard]] Result<> wait_one();
  // Ring stop: waits for every slot, returning their completions in `out`.
  [[nodiscard]] size_t wait_all(std::span<Completion> out);
  // Reset: cancels every request the kernel can still cancel, waits for all,
  // and forgets them (their buffers are no longer touched).
  void cancel_and_wait();

 private:
  struct Slot {
    bool busy = false;
    bool write = false;
    bool bounced = false;
    uint8_t op = 0;
    int fd = -1;
    uint64_t offset = 0;     // next file offset to transfer
    uint64_t remaining = 0;  // bytes still to transfer
    uint32_t sqes = 0;       // SQEs of this slot the kernel still owns
    int error = 0;
    std::vector<iovec> iov;  // the caller's buffers from `first` on
    size_t first = 0;
    uint8_t* bounce = nullptr;  // kBounceChunk bytes, aligned; owned
    size_t bounce_len = 0;      // bytes of the piece in flight
    uint32_t retries = 0;
  };

  UringQueue() = default;
  [[nodiscard]] io_uring_sqe* get_sqe();
  void begin(uint32_t slot, uint8_t op, int fd);
  void abandon(uint32_t slot);
  [[nodiscard]] Result<> queue_transfer(uint32_t slot);
  void advance(Slot& s, size_t n);
  void copy_bounce(Slot& s, bool to_guest, size_t n);
  // Handles one CQE; true if the slot finished (appended to out).
  bool complete_one(uint64_t user_data, int res, std::span<Completion> out, size_t& count,
                    bool resubmit);

  io_uring ring_{};
  bool ring_ok_ = false;
  EventFd event_;
  std::string name_;
  std::vector<Slot> slots_;
  uint32_t busy_ = 0;
  uint32_t unsubmitted_ = 0;
};

}  // namespace skiff

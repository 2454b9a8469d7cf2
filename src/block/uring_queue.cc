#include "block/uring_queue.h"

#include <fcntl.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace skiff {

namespace {

// user_data: the slot in the low 32 bits, the fallocate range index above.
constexpr uint64_t kCancelTag = ~uint64_t{0};
constexpr uint8_t kOpTransfer = 1;
constexpr uint8_t kOpFlush = 2;
constexpr uint8_t kOpFallocate = 3;
// A request the kernel keeps answering EAGAIN/EINTR is failed after this
// many tries rather than spun on.
constexpr uint32_t kMaxRetries = 64;

uint64_t tag(uint32_t slot, uint32_t range = 0) {
  return (uint64_t{range} << 32) | slot;
}

bool retryable(int res, bool cancelling) {
  // -ECANCELED without a cancel of ours: the io-wq worker of the thread that
  // submitted it went away (a vhost-user ring thread stopped); go again.
  return res == -EAGAIN || res == -EINTR || (res == -ECANCELED && !cancelling);
}

}  // namespace

Result<std::unique_ptr<UringQueue>> UringQueue::create(uint32_t slots, std::string name) {
  if (slots == 0 || slots > 32768) return fail("{}: io_uring depth {} out of range", name, slots);
  std::unique_ptr<UringQueue> q(new UringQueue());
  q->name_ = std::move(name);
  q->slots_.resize(slots);
  if (int r = ::io_uring_queue_init(slots, &q->ring_, 0); r < 0)
    return fail_with(-r, "{}: cannot set up an io_uring of depth {}", q->name_, slots);
  q->ring_ok_ = true;
  q->event_ = SKIFF_TRY(EventFd::create(0, EFD_NONBLOCK));
  if (int r = ::io_uring_register_eventfd(&q->ring_, q->event_.get()); r < 0)
    return fail_with(-r, "{}: cannot register the completion eventfd", q->name_);
  return q;
}

UringQueue::~UringQueue() {
  if (!ring_ok_) return;
  cancel_and_wait();
  for (Slot& s : slots_) std::free(s.bounce);
  ::io_uring_queue_exit(&ring_);
}

bool UringQueue::needs_bounce(std::span<const iovec> iov, IoAlignment align) {
  if (!align.any()) return false;
  for (const iovec& v : iov)
    if (reinterpret_cast<uintptr_t>(v.iov_base) % align.memory != 0 ||
        v.iov_len % align.offset != 0)
      return true;
  return false;
}

io_uring_sqe* UringQueue::get_sqe() {
  io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    // The SQ ring is full of prepared entries (several per request for
    // discard ranges): hand them over and take a fresh one.
    (void)::io_uring_submit(&ring_);
    sqe = ::io_uring_get_sqe(&ring_);
  }
  return sqe;
}

Result<bool> UringQueue::start_rw(uint32_t slot, bool write, const HostExtent& at,
                                  std::span<const iovec> iov, IoAlignment align) {
  begin(slot, kOpTransfer, at.fd);
  Slot& s = slots_[slot];
  s.write = write;
  s.offset = at.offset;
  s.iov.assign(iov.begin(), iov.end());
  for (const iovec& v : iov) s.remaining += v.iov_len;
  s.bounced = needs_bounce(iov, align);
  if (s.bounced && s.bounce == nullptr) {
    size_t a = std::max<size_t>({align.memory, align.offset, 4096});
    void* p = nullptr;
    if (int e = ::posix_memalign(&p, a, kBounceChunk); e != 0) {
      abandon(slot);
      return fail_with(e, "{}: cannot allocate a bounce buffer for direct I/O", name_);
    }
    s.bounce = static_cast<uint8_t*>(p);
  }
  if (auto r = queue_transfer(slot); !r) {
    abandon(slot);
    return std::unexpected(r.error());
  }
  return s.bounced;
}

Result<> UringQueue::queue_transfer(uint32_t slot) {
  Slot& s = slots_[slot];
  io_uring_sqe* sqe = get_sqe();
  if (sqe == nullptr) return fail("{}: no free submission entry", name_);
  if (s.bounced) {
    s.bounce_len = static_cast<size_t>(std::min<uint64_t>(s.remaining, kBounceChunk));
    if (s.write) copy_bounce(s, false, s.bounce_len);
    if (s.write)
      ::io_uring_prep_write(sqe, s.fd, s.bounce, static_cast<unsigned>(s.bounce_len), s.offset);
    else
      ::io_uring_prep_read(sqe, s.fd, s.bounce, static_cast<unsigned>(s.bounce_len), s.offset);
  } else {
    // readv/writev take at most IOV_MAX buffers; a longer chain goes in
    // pieces exactly like a short transfer.
    auto n = static_cast<unsigned>(std::min<size_t>(s.iov.size() - s.first, IOV_MAX));
    const iovec& v = s.iov[s.first];
    if (n == 1 && v.iov_len <= UINT_MAX) {
      // One buffer (most 4 KiB requests): READ/WRITE spare the kernel the
      // iovec import.
      if (s.write)
        ::io_uring_prep_write(sqe, s.fd, v.iov_base, static_cast<unsigned>(v.iov_len), s.offset);
      else
        ::io_uring_prep_read(sqe, s.fd, v.iov_base, static_cast<unsigned>(v.iov_len), s.offset);
    } else if (s.write) {
      ::io_uring_prep_writev(sqe, s.fd, &s.iov[s.first], n, s.offset);
    } else {
      ::io_uring_prep_readv(sqe, s.fd, &s.iov[s.first], n, s.offset);
    }
  }
  ::io_uring_sqe_set_data64(sqe, tag(slot));
  ++s.sqes;
  return {};
}

void UringQueue::begin(uint32_t slot, uint8_t op, int fd) {
  Slot& s = slots_[slot];
  uint8_t* bounce = s.bounce;  // kept across requests
  std::vector<iovec> iov = std::move(s.iov);
  iov.clear();
  s = Slot{};
  s.bounce = bounce;
  s.iov = std::move(iov);
  s.busy = true;
  s.op = op;
  s.fd = fd;
  ++busy_;
}

void UringQueue::abandon(uint32_t slot) {
  slots_[slot].busy = false;
  --busy_;
}

Result<> UringQueue::start_flush(uint32_t slot, int fd) {
  begin(slot, kOpFlush, fd);
  io_uring_sqe* sqe = get_sqe();
  if (sqe == nullptr) {
    abandon(slot);
    return fail("{}: no free submission entry", name_);
  }
  ::io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
  // Drain: starts after all earlier SQEs of this ring completed (the
  // writes the driver sent before the flush), and later ones wait for it.
  ::io_uring_sqe_set_flags(sqe, IOSQE_IO_DRAIN);
  ::io_uring_sqe_set_data64(sqe, tag(slot));
  ++slots_[slot].sqes;
  return {};
}

Result<> UringQueue::start_fallocate(uint32_t slot, int fd, int mode,
                                     std::span<const Range> ranges) {
  begin(slot, kOpFallocate, fd);
  Slot& s = slots_[slot];
  // Ranges are kept (as iovecs) so a retried SQE knows its range; `remaining`
  // holds the mode.
  for (const Range& r : ranges)
    s.iov.push_back(iovec{reinterpret_cast<void*>(r.offset), static_cast<size_t>(r.length)});
  s.remaining = static_cast<uint64_t>(mode);
  for (uint32_t i = 0; i < ranges.size(); ++i) {
    io_uring_sqe* sqe = get_sqe();
    if (sqe == nullptr) {
      if (s.sqes == 0) {
        abandon(slot);
        return fail("{}: no free submission entry", name_);
      }
      s.error = -EBUSY;  // the ones queued finish the slot
      break;
    }
    ::io_uring_prep_fallocate(sqe, fd, mode, ranges[i].offset, ranges[i].length);
    ::io_uring_sqe_set_data64(sqe, tag(slot, i));
    ++s.sqes;
  }
  if (s.sqes == 0) {  // no ranges at all
    abandon(slot);
    return fail("{}: fallocate without a range", name_);
  }
  return {};
}

Result<> UringQueue::submit() {
  while (::io_uring_sq_ready(&ring_) > 0) {
    int r = ::io_uring_submit(&ring_);
    if (r >= 0) continue;
    if (r == -EINTR) continue;
    return fail_with(-r, "{}: io_uring submission failed", name_);
  }
  return {};
}

void UringQueue::copy_bounce(Slot& s, bool to_guest, size_t n) {
  size_t done = 0;
  for (size_t i = s.first; i < s.iov.size() && done < n; ++i) {
    size_t take = std::min(n - done, s.iov[i].iov_len);
    auto* guest = static_cast<uint8_t*>(s.iov[i].iov_base);
    if (to_guest)
      std::memcpy(guest, s.bounce + done, take);
    else
      std::memcpy(s.bounce + done, guest, take);
    done += take;
  }
}

void UringQueue::advance(Slot& s, size_t n) {
  s.offset += n;
  s.remaining -= n;
  while (n > 0 && s.first < s.iov.size()) {
    iovec& v = s.iov[s.first];
    size_t take = std::min(n, v.iov_len);
    v.iov_base = static_cast<uint8_t*>(v.iov_base) + take;
    v.iov_len -= take;
    n -= take;
    if (v.iov_len == 0) ++s.first;
  }
}

bool UringQueue::complete_one(uint64_t user_data, int res, std::span<Completion> out, size_t& count,
                              bool resubmit) {
  if (user_data == kCancelTag) return false;
  auto slot = static_cast<uint32_t>(user_data & 0xffffffffu);
  auto range = static_cast<uint32_t>(user_data >> 32);
  if (slot >= slots_.size() || !slots_[slot].busy) return false;
  Slot& s = slots_[slot];
  --s.sqes;
  bool retry = resubmit && s.error == 0 && retryable(res, false) && ++s.retries < kMaxRetries;
  if (s.op == kOpTransfer) {
    if (res > 0) {
      auto n = static_cast<size_t>(res);
      if (s.bounced && !s.write) copy_bounce(s, true, n);
      advance(s, n);
      retry = resubmit && s.remaining > 0;
      if (!retry && s.remaining > 0) s.error = -ECANCELED;
    } else if (!retry && s.error == 0) {
      // 0 bytes: EOF on a read, or a write that cannot make progress.
      s.error = res == 0 ? -EIO : res;
    }
    if (retry && !queue_transfer(slot)) {
      retry = false;
      s.error = -EBUSY;
    }
  } else {
    if (res < 0 && !retry && s.error == 0) s.error = res;
    if (retry) {
      io_uring_sqe* sqe = get_sqe();
      if (sqe == nullptr) {
        s.error = -EBUSY;
        retry = false;
      } else {
        if (s.op == kOpFlush) {
          ::io_uring_prep_fsync(sqe, s.fd, IORING_FSYNC_DATASYNC);
        } else {
          const iovec& r = s.iov[range];
          ::io_uring_prep_fallocate(sqe, s.fd, static_cast<int>(s.remaining),
                                    reinterpret_cast<uint64_t>(r.iov_base), r.iov_len);
        }
        ::io_uring_sqe_set_data64(sqe, user_data);
        ++s.sqes;
      }
    }
  }
  if (s.sqes > 0) return false;
  s.busy = false;
  --busy_;
  if (count < out.size()) out[count++] = Completion{slot, s.error};
  return true;
}

size_t UringQueue::reap(std::span<Completion> out) {
  // Drain first, then look at the CQ: a completion after this read writes
  // the eventfd again and wakes the watcher. Without the read, edge-triggered
  // watchers miss wake-ups (the kernel need not signal an eventfd that is
  // already readable; measured: bench/blk stalls).
  (void)event_.consume();
  size_t count = 0;
  io_uring_cqe* cqe = nullptr;
  while (::io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
    uint64_t ud = cqe->user_data;
    int res = cqe->res;
    ::io_uring_cqe_seen(&ring_, cqe);
    complete_one(ud, res, out, count, true);
  }
  return count;
}

Result<> UringQueue::wait_one() {
  if (busy_ == 0) return {};
  SKIFF_TRY_VOID(submit());
  for (;;) {
    io_uring_cqe* cqe = nullptr;
    int r = ::io_uring_wait_cqe(&ring_, &cqe);
    if (r == 0) return {};
    if (r == -EINTR || r == -EAGAIN) continue;
    return fail_with(-r, "{}: waiting for io_uring completions failed", name_);
  }
}

size_t UringQueue::wait_all(std::span<Completion> out) {
  size_t count = 0;
  while (busy_ > 0) {
    if (!wait_one()) break;
    io_uring_cqe* cqe = nullptr;
    while (::io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
      uint64_t ud = cqe->user_data;
      int res = cqe->res;
      ::io_uring_cqe_seen(&ring_, cqe);
      complete_one(ud, res, out, count, true);
    }
  }
  (void)event_.consume();
  return count;
}

void UringQueue::cancel_and_wait() {
  if (busy_ > 0) {
    if (io_uring_sqe* sqe = get_sqe()) {
      ::io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
      ::io_uring_sqe_set_data64(sqe, kCancelTag);
    }
    std::vector<Completion> dropped(slots_.size());
    while (busy_ > 0) {
      if (!wait_one()) break;  // cannot wait: nothing more we can do safely
      io_uring_cqe* cqe = nullptr;
      while (::io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
        uint64_t ud = cqe->user_data;
        int res = cqe->res;
        ::io_uring_cqe_seen(&ring_, cqe);
        size_t n = 0;
        complete_one(ud, res, dropped, n, false);
      }
    }
  }
  // Leftover cancel CQEs and the eventfd count belong to the old requests.
  io_uring_cqe* cqe = nullptr;
  while (::io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) ::io_uring_cqe_seen(&ring_, cqe);
  (void)event_.consume();
}

}  // namespace skiff

#include "net/tap_ring.h"

#include <array>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "net/net_backend.h"

namespace skiff::net {

static_assert(kMaxRecvBatch <= kMaxSendBatch, "one ring size serves both directions");

Result<std::unique_ptr<TapRing>> TapRing::create() {
  std::unique_ptr<TapRing> r(new TapRing());
  // SUBMIT_ALL: a request that fails at submission does not stop the kernel
  // from taking the rest of the batch (each gets its own completion).
  int e = io_uring_queue_init(kMaxSendBatch, &r->ring_, IORING_SETUP_SUBMIT_ALL);
  if (e == -EINVAL) e = io_uring_queue_init(kMaxSendBatch, &r->ring_, 0);  // before Linux 5.18
  if (e < 0) {
    errno = -e;
    return fail_errno("io_uring_queue_init({})", kMaxSendBatch);
  }
  return r;
}

TapRing::~TapRing() {
  io_uring_queue_exit(&ring_);
}

void TapRing::queue_writes(int fd, std::span<const std::span<const iovec>> frames, size_t first) {
  const size_t n = frames.size();
  for (size_t i = first; i < n; ++i) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // the ring has kMaxSendBatch >= n entries
    // One buffer: a plain write, which the kernel serves without importing
    // an iovec array.
    if (frames[i].size() == 1)
      io_uring_prep_write(sqe, fd, frames[i][0].iov_base,
                          static_cast<unsigned>(frames[i][0].iov_len), 0);
    else
      io_uring_prep_writev(sqe, fd, frames[i].data(), static_cast<unsigned>(frames[i].size()), 0);
    sqe->rw_flags = RWF_NOWAIT;
    if (i + 1 < n) sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, i);
  }
}

void TapRing::run(size_t queued, std::span<int> results) {
  for (int& r : results) r = kUnknown;
  size_t submitted = 0;
  while (submitted < queued) {
    int r = io_uring_submit(&ring_);
    if (r == -EINTR) continue;
    if (r <= 0) {
      broken_why_ = r < 0
                        ? fmt::format("io_uring_submit: {}", std::strerror(-r))
                        : fmt::format("io_uring_submit took {} of {} requests", submitted, queued);
      break;
    }
    submitted += static_cast<size_t>(r);
  }
  for (size_t reaped = 0; reaped < submitted;) {
    io_uring_cqe* cqe = nullptr;
    int e = io_uring_wait_cqe(&ring_, &cqe);
    if (e == -EINTR || e == -EAGAIN) continue;
    if (e < 0) {
      broken_why_ = fmt::format("io_uring_wait_cqe: {}", std::strerror(-e));
      return;
    }
    uint64_t i = io_uring_cqe_get_data64(cqe);
    if (i < results.size()) results[i] = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    ++reaped;
  }
}

size_t TapRing::send(int fd, std::span<const std::span<const iovec>> frames,
                     std::span<int> refused) {
  if (broken()) return 0;
  const size_t n = frames.size() < kMaxSendBatch ? frames.size() : kMaxSendBatch;
  std::array<int, kMaxSendBatch> results{};
  size_t first = 0;
  int interrupted = 0;
  while (first < n) {
    queue_writes(fd, frames.first(n), first);
    run(n - first, std::span(results).first(n));
    // In order: sent frames, then perhaps one that failed, then the
    // cancelled rest.
    size_t i = first;
    while (i < n && results[i] >= 0 && results[i] != kUnknown) refused[i++] = 0;
    if (i == n) return n;
    const int r = results[i];
    if (r == kUnknown || r == -EAGAIN) return i;  // broken, or full: the rest stay with the caller
    if (r == -EOPNOTSUPP) {
      broken_why_ = "this kernel's tap does not take RWF_NOWAIT writes";
      return i;
    }
    if ((r == -EINTR || r == -ECANCELED) && ++interrupted < 8) {
      first = i;  // not tried, or not to the end: try it again
      continue;
    }
    refused[i] = -r;
    first = i + 1;
  }
  return n;
}

size_t TapRing::receive(int fd, std::span<const std::span<uint8_t>> bufs, std::span<int> sizes) {
  if (broken()) return 0;
  const size_t n = bufs.size() < kMaxRecvBatch ? bufs.size() : kMaxRecvBatch;
  for (size_t i = 0; i < n; ++i) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    io_uring_prep_read(sqe, fd, bufs[i].data(), static_cast<unsigned>(bufs[i].size()), 0);
    sqe->rw_flags = RWF_NOWAIT;
    io_uring_sqe_set_data64(sqe, i);
  }
  std::array<int, kMaxRecvBatch> results{};
  run(n, std::span(results).first(n));
  // Up to the last read with a known result: a read whose result the broken
  // ring lost may have taken a frame, which is then lost (-EIO), but the
  // frames read after it are still delivered, in order.
  size_t known = 0;
  for (size_t i = 0; i < n; ++i) {
    const int r = results[i];
    if (r == -EOPNOTSUPP) {
      broken_why_ = "this kernel's tap does not take RWF_NOWAIT reads";
      break;
    }
    if (r == kUnknown) {
      sizes[i] = -EIO;
      continue;
    }
    sizes[i] = r == -EAGAIN ? 0 : r;
    known = i + 1;
  }
  return known;
}

}  // namespace skiff::net

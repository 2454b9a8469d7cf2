#include "net/tap_send_ring.h"

#include <array>
#include <cerrno>

#include "net/net_backend.h"

namespace skiff::net {

Result<std::unique_ptr<TapSendRing>> TapSendRing::create() {
  std::unique_ptr<TapSendRing> r(new TapSendRing());
  if (int e = io_uring_queue_init(kMaxSendBatch, &r->ring_, 0); e < 0) {
    errno = -e;
    return fail_errno("io_uring_queue_init({})", kMaxSendBatch);
  }
  return r;
}

TapSendRing::~TapSendRing() {
  // send() leaves nothing in flight.
  io_uring_queue_exit(&ring_);
}

Result<> TapSendRing::run(int fd, std::span<const std::span<const iovec>> frames, size_t first,
                          std::span<int> results) {
  const size_t n = frames.size();
  for (size_t i = first; i < n; ++i) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // the ring has kMaxSendBatch >= n entries
    // One buffer: a plain write, which the kernel serves without importing
    // an iovec array.
    if (frames[i].size() == 1)
      io_uring_prep_write(sqe, fd, frames[i][0].iov_base, static_cast<unsigned>(frames[i][0].iov_len),
                          0);
    else
      io_uring_prep_writev(sqe, fd, frames[i].data(), static_cast<unsigned>(frames[i].size()), 0);
    if (i + 1 < n) sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, i);
  }
  size_t pending = n - first;
  int submitted = io_uring_submit(&ring_);
  if (submitted < 0) {
    // Nothing went to the kernel (the SQEs stay queued: drop them).
    io_uring_queue_exit(&ring_);
    io_uring_queue_init(kMaxSendBatch, &ring_, 0);
    errno = -submitted;
    return fail_errno("io_uring_submit of {} frames", pending);
  }
  while (pending > 0) {
    io_uring_cqe* cqe = nullptr;
    int e = io_uring_wait_cqe(&ring_, &cqe);
    if (e == -EINTR) continue;
    if (e < 0) {
      errno = -e;
      return fail_errno("io_uring_wait_cqe");
    }
    uint64_t i = io_uring_cqe_get_data64(cqe);
    if (i < results.size()) results[i] = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    --pending;
  }
  return {};
}

Result<size_t> TapSendRing::send(int fd, std::span<const std::span<const iovec>> frames,
                                 std::span<int> refused) {
  const size_t n = frames.size() < kMaxSendBatch ? frames.size() : kMaxSendBatch;
  std::array<int, kMaxSendBatch> results{};
  size_t first = 0;
  while (first < n) {
    SKIFF_TRY_VOID(run(fd, frames.first(n), first, results));
    // In order: sent frames, then perhaps one that failed, then the
    // cancelled rest.
    size_t i = first;
    while (i < n && results[i] >= 0) refused[i++] = 0;
    if (i == n) return n;
    if (results[i] == -EAGAIN) return i;  // full: the rest wait for the caller
    refused[i] = results[i] == -ECANCELED ? EIO : -results[i];
    first = i + 1;
  }
  return n;
}

}  // namespace skiff::net

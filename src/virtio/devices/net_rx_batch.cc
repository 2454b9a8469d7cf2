// VirtioNet's batched receive: while frames are small, up to kMaxRecvBatch
// of them are read with one NetBackend::receive_batch() (a tap: one system
// call) into the queue's slots and then copied into the driver's buffers.
// For a small frame the system call costs far more than the copy (bench/
// README.md "virtio-net"). Frames read but not yet delivered (the driver
// is short of buffers, or the rate limiter says wait) stay in their slots,
// in order, and go first on the next pass: nothing read is lost.

#include <algorithm>

#include "base/log.h"
#include "virtio/devices/net_rx.h"

namespace skiff::virtio {

Result<bool> VirtioNet::RxPass::read_batch() {
  // Only with a buffer to put a frame in: otherwise the frames wait in the
  // backend (the tap's queue, not ours, fills up), as on the direct path.
  if (!SKIFF_TRY(pop(0))) return false;  // the driver's next rx notification resumes
  unpop(1);
  if (!s_.pool) {
    s_.pool.reset(new uint8_t[net::kMaxRecvBatch * RxState::kSlotBytes]);
    for (size_t i = 0; i < net::kMaxRecvBatch; ++i)
      s_.slots[i] = std::span(s_.pool.get() + i * RxState::kSlotBytes, net::kRecvSpillBytes);
  }
  const size_t want = s_.batch_want;
  auto tried = net_.backend_->receive_batch(pair_, std::span(s_.slots).first(want),
                                            std::span(s_.sizes).first(want));
  if (!tried) {
    // The host side failed, not the driver: count it, keep the device.
    drop();
    LOG_DEBUG("virtio net: {}", tried.error().what());
    return false;
  }
  const size_t n = std::min(*tried, want);
  size_t frames = 0;
  for (size_t i = 0; i < n; ++i) {
    if (s_.sizes[i] <= 0) continue;
    ++frames;
    note_frame_size(static_cast<size_t>(s_.sizes[i]));
  }
  s_.batch_next = 0;
  s_.batch_count = n;
  // The backend may have more unless the last slot tried found it empty.
  s_.batch_more = n > 0 && s_.sizes[n - 1] != 0;
  // Double the batch while batches come back full; otherwise ask for one
  // more than came, so a quiet queue does not pay for many empty reads.
  s_.batch_want = std::clamp<size_t>(frames == want ? 2 * want : frames + 1, 2, net::kMaxRecvBatch);
  return frames > 0;
}

Result<bool> VirtioNet::RxPass::deliver_batch() {
  // Stopping before the batch's end: the pass that delivers the rest reads
  // again afterwards, as the backend's readiness may have been signalled
  // (and consumed) in the meantime.
  auto stop = [&] {
    s_.batch_more = true;
    return false;
  };
  while (s_.batch_pending()) {
    const int got = s_.sizes[s_.batch_next];
    const std::span<const uint8_t> slot = s_.slots[s_.batch_next];
    if (got <= 0) {  // no frame came for this slot, or one was lost on the host
      if (got < 0) {
        drop();
        LOG_DEBUG("virtio net: pair {}: receiving: {}", pair_, std::strerror(-got));
      }
      ++s_.batch_next;
      continue;
    }
    const size_t n = static_cast<size_t>(got);
    if (n < net::kVnetHeaderBytes || n >= slot.size() ||
        filtered_out(n, slot.data() + net::kVnetHeaderBytes)) {
      drop();  // not a frame (a tap never does this), cut short, or filtered
      ++s_.batch_next;
      continue;
    }
    size_t count = 1;
    if (mrg_) {
      count = SKIFF_TRY(pop_for(0, n));
      if (count == 0) return stop();  // wait for the driver to post more
    } else {
      if (!SKIFF_TRY(pop(0))) return stop();
      if (s_.chains[0].writable_bytes() < n) {
        // One chain per frame and it is too small (§5.1.6.3.1 asks the
        // driver for buffers that fit): drop the frame, keep the chain.
        unpop(1);
        drop();
        ++s_.batch_next;
        continue;
      }
      s_.lens[0] = n;
    }
    if (!pass(n)) {
      unpop(count);
      return stop();  // the limiter's timer resumes the queue
    }
    copy_in(0, count, slot.first(n));
    SKIFF_TRY_VOID(complete(count, n));
    ++s_.batch_next;
  }
  return s_.batch_more;
}

}  // namespace skiff::virtio

// Private to VirtioNet (net.cc, net_rx.cc, net_rx_batch.cc): the receive
// path's per-queue state and one pass over a receive queue.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "net/net_backend.h"
#include "virtio/devices/net.h"

namespace skiff::virtio {

struct VirtioNet::RxState {
  // Frames of this size or smaller get their chains gathered before the
  // read; the estimate follows the recent frame sizes (MRG_RXBUF only).
  static constexpr uint64_t kMinTarget = net::kVnetHeaderBytes + 1514 + 4;
  // While recent frames (header included) average this or less, they are
  // read in batches and copied; larger ones are read straight into the
  // chains, one system call each, which costs less than their copy.
  static constexpr uint64_t kBatchMaxFrame = 4096;
  // One batch slot: room for more than the largest frame (a frame that
  // fills it was cut short), rounded up to whole pages, so a small frame
  // touches one page of its slot.
  static constexpr size_t kSlotBytes = (net::kRecvSpillBytes + 4095) / 4096 * 4096;

  RxState() : spill(net::kRecvSpillBytes) {
    iov.reserve(net::kMaxIov);
    spans.reserve(net::kMaxIov);
  }
  void restart() {
    pending = 0;
    pending_charged = false;
    target = kMinTarget;
    avg_frame = kMinTarget;
    filter_generation = ~0u;
    batch_next = batch_count = 0;
    batch_more = false;
    batch_want = 2;
    pool.reset();  // its pages go back to the host until rx starts again
  }
  [[nodiscard]] bool batch_pending() const { return batch_next < batch_count; }

  std::vector<DescriptorChain> chains;  // popped for the frame being received
  std::vector<uint64_t> lens;           // bytes each popped chain takes (or can take)
  std::vector<iovec> iov;
  std::vector<std::span<uint8_t>> spans;  // the same buffers, for buffers.h
  std::vector<uint8_t> spill;             // overflow, and a frame waiting for buffers
  size_t pending = 0;                     // bytes of a whole frame held in spill
  bool pending_charged = false;           // the rate limiter let it pass already
  uint64_t target = kMinTarget;
  uint64_t avg_frame = kMinTarget;  // recent frame sizes, header included
  uint32_t filter_generation = ~0u;
  RxFilter filter;

  // Batched receive (net_rx_batch.cc). The pool (kMaxRecvBatch slots) is
  // allocated on first use and its pages become resident only as frames
  // fill them.
  std::unique_ptr<uint8_t[]> pool;
  std::array<std::span<uint8_t>, net::kMaxRecvBatch> slots{};
  std::array<int, net::kMaxRecvBatch> sizes{};  // receive_batch()'s results
  size_t batch_next = 0;                        // the first slot of the batch not yet delivered
  size_t batch_count = 0;                       // slots the last receive_batch() tried
  bool batch_more = false;  // the backend may hold more frames than that batch took
  size_t batch_want = 2;    // slots the next batch tries
};

// One call of handle_rx on a receive queue: the chain bookkeeping both
// receive paths share (the lambdas of a long function, made members).
class VirtioNet::RxPass {
 public:
  RxPass(VirtioNet& net, uint16_t pair, Queue& queue);
  // Runs the queue until the backend is empty, the buffers run out or the
  // rate limiter stops it; interrupts the driver for what it completed.
  [[nodiscard]] Result<> run();

 private:
  // The steps run() takes; each returns false when the pass is over.
  [[nodiscard]] Result<bool> deliver_held();  // a frame kept in spill
  [[nodiscard]] Result<bool> read_direct();   // one frame, read into the chains (net_rx.cc)
  [[nodiscard]] Result<bool> read_batch();    // net_rx_batch.cc
  [[nodiscard]] Result<bool> deliver_batch();

  // Pops one receive chain into s_.chains[k]; false if none is available.
  [[nodiscard]] Result<bool> pop(size_t k);
  // Pops chains after the first `have` until they hold `need` more bytes;
  // sets s_.lens to what each takes. Returns the number of chains popped,
  // or 0 if the ring ran out (they are given back).
  [[nodiscard]] Result<size_t> pop_for(size_t have, uint64_t need);
  // Gives back the last `count` chains popped (the ring still holds them).
  void unpop(size_t count);
  // Hands `count` chains to the driver (s_.lens bytes each) for a frame of
  // `n` bytes, writing num_buffers into the header (§5.1.6.4).
  [[nodiscard]] Result<> complete(size_t count, size_t n);
  // Copies `from` into chains [first, first + count), s_.lens bytes each.
  void copy_in(size_t first, size_t count, std::span<const uint8_t> from);
  // Whether the filter drops a frame of `n` bytes (header included) whose
  // Ethernet header's first 16 bytes are at `eth` (tiny frames pass).
  [[nodiscard]] bool filtered_out(size_t n, const uint8_t* eth) const;
  [[nodiscard]] bool pass(size_t n);
  void note_frame_size(size_t n);
  void drop() { bump_counter(st_.rx_dropped); }

  VirtioNet& net_;
  uint16_t pair_;
  Queue& queue_;
  RxState& s_;
  NetQueueStats& st_;
  uint16_t index_;
  bool mrg_;
  bool guest_csum_;
  bool filtering_ = false;
  unsigned unsignalled_ = 0;
};

}  // namespace skiff::virtio

// Private to VirtioNet (net.cc, net_rx.cc): the per-receive-queue state.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

#include "net/net_backend.h"
#include "virtio/devices/net.h"

namespace skiff::virtio {

struct VirtioNet::RxState {
  // Frames of this size or smaller get their chains gathered before the
  // read; the estimate follows the recent frame sizes (MRG_RXBUF only).
  static constexpr uint64_t kMinTarget = net::kVnetHeaderBytes + 1514 + 4;

  RxState() : spill(net::kVnetHeaderBytes + net::kMaxFrameBytes) {
    iov.reserve(net::kMaxIov);
    spans.reserve(net::kMaxIov);
  }
  void restart() {
    pending = 0;
    pending_charged = false;
    target = kMinTarget;
    filter_generation = ~0u;
  }

  std::vector<DescriptorChain> chains;  // popped for the frame being received
  std::vector<uint64_t> lens;           // bytes each popped chain takes (or can take)
  std::vector<iovec> iov;
  std::vector<std::span<uint8_t>> spans;  // the same buffers, for buffers.h
  std::vector<uint8_t> spill;             // overflow, and a frame waiting for buffers
  size_t pending = 0;                     // bytes of a whole frame held in spill
  bool pending_charged = false;           // the rate limiter let it pass already
  uint64_t target = kMinTarget;
  uint32_t filter_generation = ~0u;
  RxFilter filter;
};

}  // namespace skiff::virtio

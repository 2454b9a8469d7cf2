// virtio-net's receive paths (net_rx.cc, net_rx_batch.cc): small frames
// read in batches and copied, large ones read straight into the chains, and
// what each does when the driver's buffers run out.

#include <gtest/gtest.h>

#include "virtio/net_fixture.h"

namespace skiff::virtio {
namespace {

using namespace nettest;

struct NetRx : NetFixture {
  // Queues `count` frames in the backend, of `len` + i * `grow` bytes, with
  // seeds from `seed` on; they are appended to `frames`.
  void queue(int count, size_t len, int seed, size_t grow = 0) {
    for (int i = 0; i < count; ++i) {
      frames.push_back(
          frame_bytes(len + grow * static_cast<size_t>(i), static_cast<uint8_t>(seed + i)));
      backend->rx[0].push_back(with_header(frames.back()));
    }
  }
  // Posts `count` more receive chains, their addresses appended to `bufs`.
  void post_more(std::vector<uint64_t>& bufs, size_t count, uint32_t len) {
    auto more = post_rx(count, len);
    bufs.insert(bufs.end(), more.begin(), more.end());
  }
  std::vector<std::vector<uint8_t>> frames;  // queued, in order

  // The frames delivered in used entries [from, used_idx), each gathered
  // from its num_buffers chains, header stripped; `bufs` are the posted
  // chains' addresses in posting order.
  std::vector<std::vector<uint8_t>> delivered(uint16_t from, const std::vector<uint64_t>& bufs) {
    std::vector<std::vector<uint8_t>> out;
    for (uint16_t i = from; i != rx().used_idx();) {
      const uint32_t first = rx().used_elem(i).id;
      const uint16_t count = header_at(bufs.at(first)).num_buffers;
      std::vector<uint8_t> frame;
      for (uint16_t k = 0; k < count; ++k, ++i) {
        auto e = rx().used_elem(i);
        auto p = guest.host(bufs.at(e.id), e.len);
        frame.insert(frame.end(), p.begin(), p.end());
      }
      frame.erase(frame.begin(), frame.begin() + sizeof(Header));
      out.push_back(std::move(frame));
    }
    return out;
  }
};

TEST_F(NetRx, SmallFramesAreReadInBatches) {
  start(1, kAll);
  auto bufs = post_rx(60, 2048);
  queue(50, 60, 0, 1);
  net->process_queue(0);
  EXPECT_EQ(delivered(0, bufs), frames);
  // The batches grow while they come back full: 2, 4, 8, 16, 32 slots
  // take the 50 frames, and one more finds the backend empty.
  EXPECT_LE(backend->receive_batches, 7);
  EXPECT_EQ(net->stats(0).rx_packets, 50u);
  EXPECT_EQ(net->stats(0).rx_dropped, 0u);
}

TEST_F(NetRx, BatchedFramesWaitInOrderUntilBuffersArePosted) {
  start(1, kAll);
  auto bufs = post_rx(3, 2048);
  queue(12, 100, 30, 1);
  net->process_queue(0);
  ASSERT_EQ(rx().used_idx(), 3);
  // A backend event without new buffers delivers nothing and loses nothing.
  net->process_queue(0);
  EXPECT_EQ(rx().used_idx(), 3);
  post_more(bufs, 20, 2048);
  net->process_queue(0);
  EXPECT_EQ(delivered(0, bufs), frames);
  EXPECT_TRUE(backend->rx[0].empty());
  EXPECT_EQ(net->stats(0).rx_dropped, 0u);
}

TEST_F(NetRx, LargeFramesAreReadStraightIntoTheChainsThenSmallOnesBatchedAgain) {
  start(1, kAll);
  auto bufs = post_rx(64, 8192);
  queue(6, 7000, 0);
  queue(12, 64, 100);
  net->process_queue(0);
  EXPECT_EQ(delivered(0, bufs), frames);
  // The first large frame came in a batch; once they averaged more than a
  // few KiB, frames were read one by one into the chains (a receive()
  // outside any batch), until the small ones brought the average down.
  EXPECT_GT(backend->receives, static_cast<int>(frames.size()));
  EXPECT_GE(backend->receive_batches, 2);
}

TEST_F(NetRx, LargeFrameOnTheDirectPathWaitsForBuffers) {
  start(1, kAll);
  auto bufs = post_rx(8, 8192);
  queue(6, 7000, 0);
  net->process_queue(0);
  ASSERT_EQ(rx().used_idx(), 6);
  // Now on the direct path: a 20000-byte frame needs three chains of 8 KiB
  // and two are left; it is held in the spill buffer, not dropped.
  queue(1, 20000, 77);
  net->process_queue(0);
  EXPECT_EQ(rx().used_idx(), 6);
  EXPECT_TRUE(backend->rx[0].empty());
  post_more(bufs, 4, 8192);
  net->process_queue(0);
  EXPECT_EQ(delivered(0, bufs), frames);
  EXPECT_EQ(net->stats(0).rx_dropped, 0u);
}

TEST_F(NetRx, FrameLostOnTheHostIsCountedAndTheBatchGoesOn) {
  start(1, kAll);
  auto bufs = post_rx(8, 2048);
  queue(4, 200, 0);
  backend->fail_receives = 1;  // the first frame
  net->process_queue(0);
  frames.erase(frames.begin());
  EXPECT_EQ(delivered(0, bufs), frames);
  EXPECT_EQ(net->stats(0).rx_dropped, 1u);
  EXPECT_FALSE(net->needs_reset());
}

TEST_F(NetRx, BatchedFrameTooLargeForItsOnlyChainIsDroppedAndTheChainReused) {
  start(1, ~bit(kFMrgRxbuf));
  auto bufs = post_rx(2, 1526);
  backend->rx[0].push_back(with_header(frame_bytes(100, 1)));
  backend->rx[0].push_back(with_header(frame_bytes(3000, 2)));
  backend->rx[0].push_back(with_header(frame_bytes(100, 3)));
  net->process_queue(0);
  EXPECT_EQ(delivered(0, bufs),
            (std::vector<std::vector<uint8_t>>{frame_bytes(100, 1), frame_bytes(100, 3)}));
  EXPECT_EQ(net->stats(0).rx_dropped, 1u);
}

TEST_F(NetRx, BatchedFrameCutShortByItsSlotIsDroppedNotOverRead) {
  start(1, kAll);
  auto bufs = post_rx(64, 4096);
  // The backend reports the second frame's whole length, more than a slot
  // holds (NetBackend allows it for a frame cut short): it is dropped, and
  // neither delivered with bytes from past its slot nor allowed to stop the
  // frames after it.
  queue(1, 100, 1);
  backend->rx[0].push_back(with_header(frame_bytes(net::kMaxFrameBytes + 100, 2)));
  queue(3, 100, 3);
  net->process_queue(0);
  EXPECT_EQ(delivered(0, bufs), frames);
  EXPECT_EQ(net->stats(0).rx_dropped, 1u);
  EXPECT_FALSE(net->needs_reset());
}

// A frame as long as a frame can be is delivered; one byte more fills the
// receive buffer, so it was cut short: dropped. With the backend reporting
// the bytes it placed (as Linux's tap does).
void boundary_frames_on(NetRx& t, bool direct) {
  t.start(1, kAll);
  t.backend->clamp_receives = true;
  auto bufs = t.post_rx(60, 8192);
  if (direct) t.queue(6, 7000, 0);  // large frames: read straight into the chains
  t.queue(1, net::kMaxFrameBytes, 10);
  t.backend->rx[0].push_back(with_header(frame_bytes(net::kMaxFrameBytes + 1, 11)));
  t.backend->rx[0].push_back(with_header(frame_bytes(net::kMaxFrameBytes + 5000, 12)));
  t.queue(1, 100, 13);
  t.net->process_queue(0);
  EXPECT_EQ(t.delivered(0, bufs), t.frames);
  EXPECT_EQ(t.net->stats(0).rx_dropped, 2u);
  EXPECT_FALSE(t.net->needs_reset());
}

TEST_F(NetRx, LongestFrameIsDeliveredAndOneByteMoreDroppedInABatch) {
  boundary_frames_on(*this, /*direct=*/false);
}

TEST_F(NetRx, LongestFrameIsDeliveredAndOneByteMoreDroppedOnTheDirectPath) {
  boundary_frames_on(*this, /*direct=*/true);
}

TEST_F(NetRx, ResetForgetsFramesHeldInABatch) {
  start(1, kAll);
  post_rx(1, 2048);
  for (uint8_t i = 0; i < 6; ++i) backend->rx[0].push_back(with_header(frame_bytes(100, i)));
  net->process_queue(0);
  // The first batch (two slots) took frames 0 and 1; 0 went to the only
  // buffer, 1 is held, 2-5 wait in the backend.
  ASSERT_EQ(rx().used_idx(), 1);
  ASSERT_EQ(backend->rx[0].size(), 4u);
  // The driver resets the device: what was read for the old rings goes with
  // them (a reset discards the queues' contents); the backend keeps its own.
  reset_and_restart(kAll);
  auto bufs = post_rx(8, 2048);
  backend->rx[0].push_back(with_header(frame_bytes(300, 9)));
  net->process_queue(0);
  EXPECT_EQ(delivered(0, bufs), (std::vector<std::vector<uint8_t>>{
                                    frame_bytes(100, 2), frame_bytes(100, 3), frame_bytes(100, 4),
                                    frame_bytes(100, 5), frame_bytes(300, 9)}));
}

}  // namespace
}  // namespace skiff::virtio

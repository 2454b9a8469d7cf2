// VirtioNet's rate limiting (NetOptions::rate_limiter) with an injected
// clock: frames over the rate wait (tx chains stay in the ring, rx frames
// are held) and go when the tokens are back; nothing is dropped; the
// long-run rate is the configured one; the limiter's timerfd is a backend
// event of its queue and really fires.
#include <poll.h>

#include <chrono>

#include "virtio/net_fixture.h"

namespace skiff::virtio {
namespace {

using namespace nettest;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

struct NetRateLimit : NetFixture {
  NetRateLimit() {
    clock = [this] { return now; };
  }
  // For `duration` of fake time in 1 ms steps: keeps 16 tx chains of
  // `len`-byte frames available on pair 0 and lets the device run.
  void send_for(size_t len, nanoseconds duration) {
    size_t made = 0;
    nanoseconds start_time = now;
    while (now - start_time < duration) {
      while (made - tx().used_idx() < 16) send(frame_bytes(len, static_cast<uint8_t>(made++)));
      net->process_queue(1);
      now += milliseconds(1);
    }
  }
  int fd_for(uint16_t queue, size_t nth) {
    size_t seen = 0;
    for (const BackendEvent& e : net->backend_events())
      if (e.queue == queue && seen++ == nth) return e.fd;
    return -1;
  }
  nanoseconds now{1'000'000'000};
};

TEST_F(NetRateLimit, TxBurstLargerThanTheBucketIsDelayedNotDropped) {
  rate_limiter.bandwidth = {.size = 10'000, .one_time_burst = 0, .refill_time_ms = 100};
  start(1, kAll);
  for (int i = 0; i < 20; ++i) send(frame_bytes(1000, static_cast<uint8_t>(i)));
  net->process_queue(1);
  // The full bucket lets 10 frames go; the rest stay available.
  EXPECT_EQ(backend->sent[0].size(), 10u);
  EXPECT_EQ(tx().used_idx(), 10);
  EXPECT_GE(net->stats(0).tx_throttled, 1u);
  EXPECT_EQ(net->stats(0).tx_dropped, 0u);
  // A kick while throttled sends nothing more.
  net->process_queue(1);
  EXPECT_EQ(backend->sent[0].size(), 10u);
  // 100 B/ms: the rest takes 100 ms of (fake) time.
  nanoseconds start_time = now;
  while (backend->sent[0].size() < 20 && now - start_time < milliseconds(1000)) {
    now += milliseconds(1);
    net->process_queue(1);  // what the limiter's timer does
  }
  EXPECT_EQ(backend->sent[0].size(), 20u);
  EXPECT_EQ(tx().used_idx(), 20);
  using Ms = std::chrono::duration<double, std::milli>;
  EXPECT_NEAR(Ms(now - start_time).count(), 100.0, 2.0);
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(backend->sent[0][static_cast<size_t>(i)],
              with_header(frame_bytes(1000, static_cast<uint8_t>(i))))
        << "frame " << i;
  EXPECT_EQ(net->stats(0).tx_dropped, 0u);
  EXPECT_FALSE(net->needs_reset());
}

TEST_F(NetRateLimit, TxThroughputMatchesTheConfiguredRate) {
  // 100 KB/s in a 5 KB bucket, 1500-byte frames, 2 s of fake time.
  rate_limiter.bandwidth = {.size = 5'000, .one_time_burst = 0, .refill_time_ms = 50};
  start(1, kAll);
  send_for(1500, milliseconds(2000));
  double bytes = static_cast<double>(net->stats(0).tx_bytes);
  // The initial bucket plus 2 s at 100 KB/s, within a frame or two.
  EXPECT_NEAR(bytes, 5'000 + 200'000, 3'000);
  EXPECT_EQ(net->stats(0).tx_dropped, 0u);
}

TEST_F(NetRateLimit, PacketBucketLimitsSmallFrames) {
  // 100 packets/s (10 per 100 ms), bytes unlimited.
  rate_limiter.ops = {.size = 10, .one_time_burst = 0, .refill_time_ms = 100};
  start(1, kAll);
  send_for(60, milliseconds(1000));
  EXPECT_NEAR(static_cast<double>(net->stats(0).tx_packets), 10 + 100, 2);
}

TEST_F(NetRateLimit, RxFrameOverTheRateIsHeldThenDeliveredIntact) {
  rate_limiter.bandwidth = {.size = 2'000, .one_time_burst = 0, .refill_time_ms = 100};
  start(1, kAll);
  auto bufs = post_rx(8, 2048);
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < 5; ++i) {
    frames.push_back(frame_bytes(1000, static_cast<uint8_t>(40 + i)));
    backend->rx[0].push_back(with_header(frames.back()));
  }
  net->process_queue(0);
  // Two frames fit the bucket; the third was read and is held (with the
  // others of its batch: the frames below all arrive, in order).
  ASSERT_EQ(rx().used_idx(), 2);
  EXPECT_EQ(net->stats(0).rx_throttled, 1u);
  // A backend event while throttled delivers nothing.
  net->process_queue(0);
  EXPECT_EQ(rx().used_idx(), 2);
  // 20 B/ms: each further frame needs 50 ms.
  now += milliseconds(49);
  net->process_queue(0);
  EXPECT_EQ(rx().used_idx(), 2);
  now += milliseconds(1);
  net->process_queue(0);
  EXPECT_EQ(rx().used_idx(), 3);
  now += milliseconds(100);
  net->process_queue(0);
  ASSERT_EQ(rx().used_idx(), 5);
  for (uint16_t i = 0; i < 5; ++i) {
    EXPECT_EQ(rx().used_elem(i).id, i);
    auto got = guest.host(bufs[i], 1012);
    EXPECT_EQ(std::vector<uint8_t>(got.begin(), got.end()),
              with_header(frames[i], Header{0, 0, 0, 0, 0, 0, 1}))
        << "frame " << i;
  }
  EXPECT_EQ(net->stats(0).rx_dropped, 0u);
  EXPECT_EQ(net->stats(0).rx_packets, 5u);
}

TEST_F(NetRateLimit, HeldRxFrameWithoutMergeableBuffersGoesToTheSameChain) {
  rate_limiter.ops = {.size = 1, .one_time_burst = 0, .refill_time_ms = 10};
  start(1, ~bit(kFMrgRxbuf));
  auto bufs = post_rx(2, 1600);
  auto f0 = frame_bytes(1400, 1), f1 = frame_bytes(1400, 2);
  backend->rx[0].push_back(with_header(f0));
  backend->rx[0].push_back(with_header(f1));
  net->process_queue(0);
  ASSERT_EQ(rx().used_idx(), 1);
  now += milliseconds(10);
  net->process_queue(0);
  ASSERT_EQ(rx().used_idx(), 2);
  auto got = guest.host(bufs[1] + 12, 1400);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), f1.begin()));
}

TEST_F(NetRateLimit, LimiterTimersAreBackendEventsThatFire) {
  rate_limiter.bandwidth = {.size = 1'000, .one_time_burst = 0, .refill_time_ms = 20};
  start(2, kAll);
  // Per pair: a timer for receiveq (0, 2) and transmitq (1, 3).
  for (uint16_t q : {0, 1, 2, 3}) EXPECT_GE(fd_for(q, 0), 0) << "queue " << q;
  int tx_timer = fd_for(1, 0);
  pollfd p{tx_timer, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "not armed yet";
  send(frame_bytes(800, 1));
  send(frame_bytes(800, 2));
  net->process_queue(1);
  EXPECT_EQ(backend->sent[0].size(), 1u);
  // Armed with the limiter's wait (600 bytes at 50 B/ms = 12 ms, real time).
  EXPECT_EQ(::poll(&p, 1, 1000), 1) << "the timer never fired";
  now += milliseconds(12);
  net->process_queue(1);
  EXPECT_EQ(backend->sent[0].size(), 2u);
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "the device did not read its fired timer";
}

TEST_F(NetRateLimit, NoLimiterMeansNoTimers) {
  start(2, kAll);
  EXPECT_TRUE(net->backend_events().empty());  // the fake backend has no fds
}

}  // namespace
}  // namespace skiff::virtio

// Token buckets with Cloud Hypervisor's rate_limiter semantics, on an
// injected clock (no sleeping), plus the timerfd the device arms.
#include "net/rate_limiter.h"

#include <poll.h>

#include <gtest/gtest.h>

namespace skiff::net {
namespace {

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

struct FakeClock {
  nanoseconds now{1'000'000'000};
  MonotonicClock fn() {
    return [this] { return now; };
  }
};

RateLimiterConfig bytes_limit(uint64_t size, uint64_t refill_ms, uint64_t burst = 0) {
  RateLimiterConfig c;
  c.bandwidth = {size, burst, refill_ms};
  return c;
}

TEST(RateLimiter, ZeroSizeOrZeroRefillTimeDoesNotLimit) {
  FakeClock clock;
  for (auto cfg : {bytes_limit(0, 100), bytes_limit(1000, 0), RateLimiterConfig{}}) {
    RateLimiter rl(cfg, clock.fn());
    EXPECT_FALSE(rl.limits());
    for (int i = 0; i < 1000; ++i) ASSERT_TRUE(rl.try_consume(1 << 20));
    EXPECT_EQ(rl.wait_time(1 << 30), 0ns);
  }
}

TEST(RateLimiter, BucketStartsFullAndRefusesWhenEmpty) {
  FakeClock clock;
  RateLimiter rl(bytes_limit(1000, 100), clock.fn());
  EXPECT_TRUE(rl.try_consume(600));
  EXPECT_TRUE(rl.try_consume(400));
  EXPECT_FALSE(rl.try_consume(1));
  EXPECT_EQ(rl.refusals(), 1u);
}

TEST(RateLimiter, RefillsAtSizePerRefillTime) {
  FakeClock clock;
  RateLimiter rl(bytes_limit(1000, 100), clock.fn());  // 10 bytes per ms
  ASSERT_TRUE(rl.try_consume(1000));
  clock.now += 50ms;  // half the bucket back
  EXPECT_FALSE(rl.try_consume(501));
  EXPECT_TRUE(rl.try_consume(500));
  EXPECT_FALSE(rl.try_consume(1));
  clock.now += 1s;  // never more than full
  EXPECT_TRUE(rl.try_consume(1000));
  EXPECT_FALSE(rl.try_consume(1));
}

TEST(RateLimiter, FractionalRefillDoesNotDrift) {
  // 3 tokens per 1000 ms: one token every 333.33 ms. 3000 steps of 1 ms
  // must yield exactly 9 tokens (rounding per step would give 0).
  FakeClock clock;
  RateLimiterConfig c;
  c.ops = {3, 0, 1000};
  RateLimiter rl(c, clock.fn());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(rl.try_consume(0));
  int passed = 0;
  for (int ms = 0; ms < 3000; ++ms) {
    clock.now += 1ms;
    while (rl.try_consume(0)) ++passed;
  }
  EXPECT_EQ(passed, 9);
}

TEST(RateLimiter, LongRunRateMatchesTheConfiguration) {
  // 1 MB/s (100 KB per 100 ms) with 1500-byte frames, polled every 1 ms
  // for 10 s: 10 MB (+ the initial full bucket), within one frame.
  FakeClock clock;
  RateLimiter rl(bytes_limit(100'000, 100), clock.fn());
  uint64_t sent = 0;
  for (int ms = 0; ms < 10'000; ++ms) {
    while (rl.try_consume(1500)) sent += 1500;
    clock.now += 1ms;
  }
  EXPECT_GE(sent, 10'000'000u + 100'000u - 3000u);
  EXPECT_LE(sent, 10'000'000u + 100'000u);
}

TEST(RateLimiter, OneTimeBurstComesFirstAndIsNotRefilled) {
  FakeClock clock;
  RateLimiter rl(bytes_limit(1000, 1000, 5000), clock.fn());
  EXPECT_TRUE(rl.try_consume(5000));  // the burst
  EXPECT_TRUE(rl.try_consume(1000));  // then the full bucket
  EXPECT_FALSE(rl.try_consume(1));
  clock.now += 10s;  // the bucket refills, the burst does not
  EXPECT_TRUE(rl.try_consume(1000));
  EXPECT_FALSE(rl.try_consume(1));
}

TEST(RateLimiter, BurstAndBucketCombineForOneRequest) {
  FakeClock clock;
  TokenBucket b({1000, 300, 1000}, clock.now);
  EXPECT_EQ(b.available(clock.now), 1300u);
  EXPECT_TRUE(b.try_consume(1200, clock.now));
  EXPECT_EQ(b.available(clock.now), 100u);
}

TEST(RateLimiter, PacketNeedsBothBucketsAndRefusalTakesNothing) {
  FakeClock clock;
  RateLimiterConfig c;
  c.bandwidth = {10'000, 0, 1000};
  c.ops = {2, 0, 1000};
  RateLimiter rl(c, clock.fn());
  EXPECT_TRUE(rl.try_consume(1000));
  EXPECT_TRUE(rl.try_consume(1000));
  // Out of ops: the bytes must not be spent by the refused packets.
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(rl.try_consume(1000));
  clock.now += 1s;  // both full again
  EXPECT_TRUE(rl.try_consume(8000, 0));
  EXPECT_TRUE(rl.try_consume(2000, 0));  // all 10000 bytes were still there
}

TEST(RateLimiter, OversizedRequestPassesOnAFullBucketAndLeavesADebt) {
  // A 64 KiB TSO frame through a 16 KiB bucket refilled every 100 ms.
  FakeClock clock;
  RateLimiter rl(bytes_limit(16384, 100), clock.fn());
  EXPECT_TRUE(rl.try_consume(65536));
  // Debt of 48 KiB plus 1 byte to pass: 3 refill periods and a bit.
  EXPECT_FALSE(rl.try_consume(1));
  EXPECT_FALSE(rl.try_consume(0));  // not even a packet of no bytes while in debt
  auto wait = rl.wait_time(1);
  EXPECT_GT(wait, 300ms);
  EXPECT_LT(wait, 301ms);
  // Another oversized frame waits for a full bucket: 4 periods.
  EXPECT_EQ(rl.wait_time(65536), 400ms);
  clock.now += 399ms;
  EXPECT_FALSE(rl.try_consume(65536));
  clock.now += 1ms;
  EXPECT_TRUE(rl.try_consume(65536));
}

TEST(RateLimiter, WaitTimeIsExactlyWhenTheRequestPasses) {
  FakeClock clock;
  RateLimiterConfig c;
  c.bandwidth = {1000, 0, 100};  // 10 bytes/ms
  c.ops = {10, 0, 1000};         // 1 op per 100 ms
  RateLimiter rl(c, clock.fn());
  ASSERT_TRUE(rl.try_consume(1000, 10));
  for (uint64_t bytes : {1u, 15u, 500u, 999u, 1000u}) {
    nanoseconds wait = rl.wait_time(bytes);
    ASSERT_GT(wait, 0ns) << bytes;
    EXPECT_EQ(wait, std::max<nanoseconds>(100ms, nanoseconds((bytes * 100'000'000 + 999) / 1000)))
        << bytes;
  }
  // Walk the clock to one ns before the answer: still refused; at it: passes.
  nanoseconds wait = rl.wait_time(700);
  clock.now += wait - 1ns;
  EXPECT_FALSE(rl.try_consume(700));
  clock.now += 1ns;
  EXPECT_TRUE(rl.try_consume(700));
  EXPECT_EQ(rl.wait_time(0, 0), 0ns);
}

TEST(RateLimiter, HugeValuesDoNotOverflow) {
  FakeClock clock;
  TokenBucket b({UINT64_MAX, UINT64_MAX, UINT64_MAX}, clock.now);
  EXPECT_TRUE(b.try_consume(UINT64_MAX, clock.now));  // the burst
  EXPECT_TRUE(b.try_consume(1, clock.now));
  clock.now += nanoseconds(INT64_MAX / 2);
  EXPECT_GT(b.available(clock.now), 0u);
  TokenBucket tiny({1, 0, 1}, clock.now);
  EXPECT_TRUE(tiny.try_consume(UINT64_MAX, clock.now));  // oversized: a huge debt
  EXPECT_FALSE(tiny.try_consume(1, clock.now));
  EXPECT_GT(tiny.wait_time(1, clock.now), 1'000'000h);
  clock.now -= 1s;  // a clock going backwards adds nothing
  EXPECT_FALSE(tiny.try_consume(1, clock.now));
}

TEST(RateLimitTimer, FiresOnceAfterTheDelay) {
  auto t = RateLimitTimer::create();
  ASSERT_TRUE(t) << t.error().what();
  EXPECT_FALSE(t->consume());  // not armed: nothing to read
  ASSERT_TRUE(t->arm(2ms));
  EXPECT_TRUE(t->armed());
  pollfd p{t->fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  EXPECT_TRUE(t->consume());
  EXPECT_FALSE(t->armed());
  EXPECT_EQ(::poll(&p, 1, 20), 0);  // one-shot
  ASSERT_TRUE(t->arm(0ns));         // zero still fires (1 ns)
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  ASSERT_TRUE(t->arm(10s));
  t->disarm();
  EXPECT_EQ(::poll(&p, 1, 20), 0);
}

}  // namespace
}  // namespace skiff::net

#include "net/rate_limiter.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>

namespace skiff::net {

using std::chrono::nanoseconds;

nanoseconds steady_now() {
  return std::chrono::duration_cast<nanoseconds>(
      std::chrono::steady_clock::now().time_since_epoch());
}

// --- TokenBucket

TokenBucket::TokenBucket(const TokenBucketConfig& config, nanoseconds now) {
  if (!config.limits()) return;  // size 0 or refill_time 0: no limit (as Cloud Hypervisor)
  // Sizes past INT64_MAX are clamped: the budget is signed (debt), and no
  // real link moves 2^63 bytes in a refill period.
  constexpr uint64_t kMax = std::numeric_limits<int64_t>::max();
  size_ = std::min(config.size, kMax);
  // refill_time in ms, kept in ns; clamped so ns fit in 64 bits (292 years).
  refill_ns_ = std::min<uint64_t>(config.refill_time_ms, kMax / 1'000'000) * 1'000'000;
  burst_ = config.one_time_burst;
  budget_ = static_cast<int64_t>(size_);  // the bucket starts full
  last_ = now;
}

void TokenBucket::refill(nanoseconds now) {
  if (now <= last_) return;  // the clock is monotonic; equal or earlier adds nothing
  auto elapsed = static_cast<uint64_t>((now - last_).count());
  last_ = now;
  // No refill while the one-time burst lasts (the bucket is still full
  // then) or while the bucket is full: nothing accumulates past `size`.
  if (burst_ > 0 || budget_ >= static_cast<int64_t>(size_)) {
    carry_ = 0;
    return;
  }
  // Each ns adds size/refill_ns tokens: size token-ns per ns, one token per
  // refill_ns token-ns. elapsed < 2^64 and size < 2^63, so this fits.
  carry_ += static_cast<unsigned __int128>(elapsed) * size_;
  unsigned __int128 add = carry_ / refill_ns_;
  carry_ %= refill_ns_;
  auto room = static_cast<unsigned __int128>(static_cast<int64_t>(size_) - budget_);
  if (add >= room) {
    budget_ = static_cast<int64_t>(size_);
    carry_ = 0;
  } else {
    budget_ += static_cast<int64_t>(add);
  }
}

bool TokenBucket::can_consume(uint64_t tokens, nanoseconds now) {
  if (!limits()) return true;
  refill(now);
  // In debt (after an oversized request) nothing passes, not even a
  // zero-byte request: the debt is repaid first.
  if (budget_ < 0) return false;
  if (tokens <= burst_) return true;
  uint64_t rest = tokens - burst_;
  if (rest <= static_cast<uint64_t>(budget_)) return true;
  // Larger than the whole bucket: passes on a full bucket, leaving a debt.
  return rest > size_ && budget_ == static_cast<int64_t>(size_);
}

void TokenBucket::consume(uint64_t tokens) {
  if (!limits()) return;
  if (tokens <= burst_) {
    burst_ -= tokens;
    return;
  }
  uint64_t rest = tokens - burst_;
  burst_ = 0;
  // rest <= budget, or rest > size with budget == size: the debt is less
  // than rest and rest fits int64 when size does (requests are frame-sized).
  budget_ -= static_cast<int64_t>(std::min<uint64_t>(rest, std::numeric_limits<int64_t>::max()));
}

bool TokenBucket::try_consume(uint64_t tokens, nanoseconds now) {
  if (!can_consume(tokens, now)) return false;
  consume(tokens);
  return true;
}

nanoseconds TokenBucket::wait_time(uint64_t tokens, nanoseconds now) {
  if (can_consume(tokens, now)) return nanoseconds(0);
  // The burst is spent by then; the bucket must hold `rest`, or be full
  // for a request larger than itself.
  uint64_t rest = tokens - burst_;
  auto target = static_cast<int64_t>(std::min(rest, size_));
  auto deficit = static_cast<unsigned __int128>(target - budget_);
  unsigned __int128 needed = deficit * refill_ns_ - carry_;  // token-ns still to accrue
  unsigned __int128 ns = (needed + size_ - 1) / size_;
  constexpr auto kMaxNs = static_cast<unsigned __int128>(std::numeric_limits<int64_t>::max());
  return nanoseconds(static_cast<int64_t>(std::min(ns, kMaxNs)));
}

uint64_t TokenBucket::available(nanoseconds now) {
  if (!limits()) return std::numeric_limits<uint64_t>::max();
  refill(now);
  return burst_ + static_cast<uint64_t>(std::max<int64_t>(budget_, 0));
}

// --- RateLimiter

RateLimiter::RateLimiter(const RateLimiterConfig& config, MonotonicClock clock)
    : clock_(std::move(clock)) {
  nanoseconds now = clock_();
  bytes_ = TokenBucket(config.bandwidth, now);
  ops_ = TokenBucket(config.ops, now);
}

bool RateLimiter::try_consume(uint64_t bytes, uint64_t ops) {
  if (!limits()) return true;
  nanoseconds now = clock_();
  // Both or neither: a packet refused for ops must not have spent bytes.
  if (!bytes_.can_consume(bytes, now) || !ops_.can_consume(ops, now)) {
    ++refusals_;
    return false;
  }
  bytes_.consume(bytes);
  ops_.consume(ops);
  return true;
}

nanoseconds RateLimiter::wait_time(uint64_t bytes, uint64_t ops) {
  if (!limits()) return nanoseconds(0);
  nanoseconds now = clock_();
  return std::max(bytes_.wait_time(bytes, now), ops_.wait_time(ops, now));
}

// --- RateLimitTimer

Result<RateLimitTimer> RateLimitTimer::create() {
  int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd < 0) return fail_errno("timerfd_create for a rate limiter");
  RateLimitTimer t;
  t.fd_.reset(fd);
  return t;
}

Result<> RateLimitTimer::arm(nanoseconds delay) {
  int64_t ns = std::max<int64_t>(delay.count(), 1);
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  spec.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  if (::timerfd_settime(fd_.get(), 0, &spec, nullptr) < 0)
    return fail_errno("arming a rate limiter timerfd");
  armed_ = true;
  return {};
}

void RateLimitTimer::disarm() {
  itimerspec spec{};
  (void)::timerfd_settime(fd_.get(), 0, &spec, nullptr);
  armed_ = false;
}

bool RateLimitTimer::consume() {
  uint64_t expirations = 0;
  if (::read(fd_.get(), &expirations, sizeof expirations) != sizeof expirations) return false;
  armed_ = false;
  return true;
}

}  // namespace skiff::net

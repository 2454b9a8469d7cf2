// Token-bucket rate limiting for network (and other) devices, with Cloud
// Hypervisor's `rate_limiter` semantics (cloud-hypervisor-api.yaml,
// TokenBucket / RateLimiterConfig):
//   - `size` tokens fit in a bucket, which starts full;
//   - `one_time_burst` extra tokens are available once, at the start, and
//     are spent before the bucket; the bucket refills only once they are gone;
//   - the bucket refills at the constant rate size / refill_time (ms), i.e.
//     from empty to full in refill_time;
//   - a bucket with size 0 or refill_time 0 does not limit.
// A RateLimiter holds a bytes ("bandwidth") bucket and an ops (packets)
// bucket; one packet consumes from both or from neither.
//
// Deliberate difference from Cloud Hypervisor/Firecracker: a request larger
// than the whole bucket (a 64 KiB TSO frame through a 16 KiB bucket) is let
// through when the bucket is full and leaves it in debt, which the refill pays
// back before anything else passes. The long-run rate stays size/refill_time
// and such a request can never starve, and a failed request consumes nothing.
//
// Device threads do not spin on a limited queue: after a refusal,
// wait_time() says when the same request will pass, and RateLimitTimer is a
// timerfd to arm with it and to watch next to the queue's notifications
// (virtio::BackendEvent). Not thread-safe: one limiter per direction per
// device thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "base/fd.h"
#include "base/result.h"

namespace skiff::net {

struct TokenBucketConfig {
  uint64_t size = 0;            // tokens (bytes or ops); 0: unlimited
  uint64_t one_time_burst = 0;  // extra tokens available once, at start
  uint64_t refill_time_ms = 0;  // time to refill from empty to full; 0: unlimited

  [[nodiscard]] bool limits() const { return size != 0 && refill_time_ms != 0; }
  bool operator==(const TokenBucketConfig&) const = default;
};

struct RateLimiterConfig {
  TokenBucketConfig bandwidth;  // bytes
  TokenBucketConfig ops;        // operations (packets)

  [[nodiscard]] bool limits() const { return bandwidth.limits() || ops.limits(); }
  bool operator==(const RateLimiterConfig&) const = default;
};

// Monotonic time since an arbitrary epoch; injectable for tests.
using MonotonicClock = std::function<std::chrono::nanoseconds()>;
[[nodiscard]] std::chrono::nanoseconds steady_now();

class TokenBucket {
 public:
  TokenBucket() = default;  // unlimited
  TokenBucket(const TokenBucketConfig& config, std::chrono::nanoseconds now);

  [[nodiscard]] bool limits() const { return size_ != 0; }

  // Whether `tokens` can be taken now (see the header comment for requests
  // larger than the bucket).
  [[nodiscard]] bool can_consume(uint64_t tokens, std::chrono::nanoseconds now);
  // Takes `tokens`; only after can_consume(tokens, now) said yes.
  void consume(uint64_t tokens);
  // can_consume, then consume when it can.
  [[nodiscard]] bool try_consume(uint64_t tokens, std::chrono::nanoseconds now);
  // How long until try_consume(tokens) succeeds if nothing else consumes; 0 if now.
  [[nodiscard]] std::chrono::nanoseconds wait_time(uint64_t tokens, std::chrono::nanoseconds now);

  // Tokens available now without debt (one-time burst included); for tests.
  [[nodiscard]] uint64_t available(std::chrono::nanoseconds now);

 private:
  void refill(std::chrono::nanoseconds now);

  uint64_t size_ = 0;
  uint64_t refill_ns_ = 0;
  uint64_t burst_ = 0;  // one-time burst left
  int64_t budget_ = 0;  // may be negative (debt) after an oversized request
  // Refill progress below one token, in token-nanoseconds: tokens are added
  // as floor(carry / refill_ns), so no rounding error accumulates.
  unsigned __int128 carry_ = 0;
  std::chrono::nanoseconds last_{0};
};

class RateLimiter {
 public:
  explicit RateLimiter(const RateLimiterConfig& config = {}, MonotonicClock clock = steady_now);

  [[nodiscard]] bool limits() const { return bytes_.limits() || ops_.limits(); }

  // One operation (a packet) of `bytes`: consumes `ops` ops and `bytes`
  // bytes, from both buckets or from neither.
  [[nodiscard]] bool try_consume(uint64_t bytes, uint64_t ops = 1);
  // When try_consume(bytes, ops) will pass if nothing else consumes; 0 if now.
  [[nodiscard]] std::chrono::nanoseconds wait_time(uint64_t bytes, uint64_t ops = 1);
  [[nodiscard]] uint64_t refusals() const { return refusals_; }

 private:
  MonotonicClock clock_;
  TokenBucket bytes_;
  TokenBucket ops_;
  uint64_t refusals_ = 0;
};

// A one-shot CLOCK_MONOTONIC timerfd (non-blocking, close-on-exec): the
// device arms it with RateLimiter::wait_time() after a refusal, the I/O
// thread watches fd() and re-runs the queue when it fires.
class RateLimitTimer {
 public:
  [[nodiscard]] static Result<RateLimitTimer> create();
  [[nodiscard]] int fd() const { return fd_.get(); }
  // Fires once after `delay` (at least 1 ns: a zero timerfd would be disarmed).
  [[nodiscard]] Result<> arm(std::chrono::nanoseconds delay);
  void disarm();
  [[nodiscard]] bool armed() const { return armed_; }
  // Reads the expiry count; true if the timer had fired.
  bool consume();

 private:
  Fd fd_;
  bool armed_ = false;
};

}  // namespace skiff::net

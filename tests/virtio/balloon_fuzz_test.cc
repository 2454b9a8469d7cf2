// The balloon fuzz body (tests/fuzz/balloon_fuzz_body.h) under GCC on a
// bounded number of inputs: valid seeds (an inflate, a deflate, a stats
// buffer, a free page report) and random mutations of them. A failing
// property or a sanitizer report fails the test; the input is printed in
// hex. SKIFF_FUZZ_ITERATIONS overrides the count.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "fuzz/balloon_fuzz_body.h"
#include "virtio/queue.h"

namespace skiff::fuzz {
namespace {

using virtio::VirtqDesc;

template <typename T>
void put(std::vector<uint8_t>& v, size_t at, T x) {
  if (v.size() < at + sizeof x) v.resize(at + sizeof x);
  std::memcpy(v.data() + at, &x, sizeof x);
}

// Queue q gets one chain (one descriptor) made available.
void chain(std::vector<uint8_t>& in, uint16_t q, VirtqDesc d) {
  size_t ring = kBalloonHeaderBytes + q * 0x400ull;
  put(in, ring, d);
  put<uint16_t>(in, ring + 0x100 + 2, 1);  // avail idx
}

std::vector<uint8_t> seed() {
  std::vector<uint8_t> in(kBalloonHeaderBytes + 2 * kBalloonRegionSize, 0);
  in[0] = 1 | 2;  // stats + reporting: queues inflate, deflate, stats, reporting
  put<uint32_t>(in, 2, 4);
  put<uint32_t>(in, 6, 2);
  const size_t data = kBalloonHeaderBytes + 0x1000;
  // PFNs of region B's first pages, one outside RAM.
  put<uint32_t>(in, data, kBalloonRegionB >> 12);
  put<uint32_t>(in, data + 4, (kBalloonRegionB >> 12) + 1);
  put<uint32_t>(in, data + 8, 0xffffffffu);
  chain(in, 0, {kBalloonRegionA + 0x1000, 12, 0, 0});
  chain(in, 1, {kBalloonRegionA + 0x1000, 8, 0, 0});
  // A stats buffer: MEMFREE, MEMTOT.
  put<uint16_t>(in, data + 0x100, 4);
  put<uint64_t>(in, data + 0x102, 1 << 20);
  put<uint16_t>(in, data + 0x10a, 5);
  put<uint64_t>(in, data + 0x10c, 1 << 24);
  chain(in, 2, {kBalloonRegionA + 0x1100, 20, 0, 0});
  chain(in, 3, {kBalloonRegionB + 0x1000, 0x2000, virtio::kDescFlagWrite, 0});
  return in;
}

std::vector<uint8_t> mutate(std::vector<uint8_t> v, std::mt19937_64& rng) {
  static constexpr uint32_t kBoundary[] = {0,     1,      3,      4,       5,       9,
                                           10,    11,     0x10,   0x20,    0x27,    0x28,
                                           0xfff, 0x1000, 0x8000, 0x40000, 0x40004, 0xffffffff};
  int ops = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < ops; ++i) {
    // Mostly the header and the rings/data at the start of region A.
    size_t at = rng() % 2 ? rng() % (kBalloonHeaderBytes + 0x1200) : rng() % v.size();
    switch (rng() % 4) {
      case 0:
        v[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 1:
        v[at] = static_cast<uint8_t>(rng());
        break;
      case 2:
        put<uint32_t>(v, at, kBoundary[rng() % std::size(kBoundary)]);
        break;
      case 3:
        put<uint16_t>(v, at, static_cast<uint16_t>(kBoundary[rng() % std::size(kBoundary)]));
        break;
    }
  }
  return v;
}

std::string hex(const std::vector<uint8_t>& v) {
  std::string s;
  for (size_t i = 0; i < std::min<size_t>(v.size(), 0x1400); ++i) s += fmt::format("{:02x}", v[i]);
  return s;
}

TEST(BalloonFuzz, SeedIsAcceptedWithoutReset) {
  auto in = seed();
  EXPECT_EQ(exercise_balloon(in.data(), in.size()), 0);
}

TEST(BalloonFuzz, MutationsNeverBreakTheProperties) {
  size_t n = 3000;
  if (const char* e = std::getenv("SKIFF_FUZZ_ITERATIONS")) n = std::strtoull(e, nullptr, 10);
  std::mt19937_64 rng(0xba11007);
  const auto base = seed();
  size_t outcomes[2] = {0, 0};
  for (size_t i = 0; i < n; ++i) {
    auto in = mutate(base, rng);
    int r = exercise_balloon(in.data(), in.size());
    ASSERT_GE(r, 0) << "property failed for input " << hex(in);
    ++outcomes[r];
  }
  // Both accepted and refused inputs were explored.
  EXPECT_GT(outcomes[0], n / 20);
  EXPECT_GT(outcomes[1], n / 200);
  // Pure noise, short and long.
  for (size_t i = 0; i < n / 10; ++i) {
    std::vector<uint8_t> in(rng() % 0x1400);
    for (auto& b : in) b = static_cast<uint8_t>(rng());
    ASSERT_GE(exercise_balloon(in.data(), in.size()), 0) << hex(in);
  }
}

}  // namespace
}  // namespace skiff::fuzz

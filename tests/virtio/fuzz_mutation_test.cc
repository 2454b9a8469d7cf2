// Runs the libFuzzer bodies (tests/fuzz/*_fuzz_body.h) under GCC, with and
// without -DSKIFF_SANITIZE=ON, on a bounded number of inputs: valid seeds
// and random mutations of them (byte flips, 16/32/64-bit overwrites with
// boundary values, truncation, extension), plus pure noise. clang 14 cannot
// build our C++23 code for libFuzzer on Debian 12, so this is the fuzzing
// CI runs today. A failing property or a sanitizer report fails the test;
// the failing input is printed in hex so it can be turned into a unit test.
// SKIFF_FUZZ_ITERATIONS overrides the per-target iteration count.
#include <gtest/gtest.h>
#include <linux/virtio_blk.h>

#include <algorithm>
#include <cstdlib>
#include <random>

#include "fuzz/blk_request_fuzz_body.h"
#include "fuzz/virtqueue_fuzz_body.h"

namespace skiff::fuzz {
namespace {

size_t iterations(size_t fallback) {
  if (const char* e = std::getenv("SKIFF_FUZZ_ITERATIONS")) return std::strtoull(e, nullptr, 10);
  return fallback;
}

std::string hex(const std::vector<uint8_t>& v) {
  std::string s;
  for (uint8_t b : v) s += fmt::format("{:02x}", b);
  return s;
}

template <typename T>
void put(std::vector<uint8_t>& v, size_t at, T x) {
  if (v.size() < at + sizeof x) v.resize(at + sizeof x);
  std::memcpy(v.data() + at, &x, sizeof x);
}

std::vector<uint8_t> mutate(std::vector<uint8_t> v, std::mt19937_64& rng) {
  static constexpr uint64_t kBoundary[] = {0,          1,
                                           2,          15,
                                           16,         17,
                                           255,        256,
                                           511,        512,
                                           4095,       4096,
                                           0x7fff,     0x8000,
                                           0xffff,     0x10000,
                                           0xffffffff, 0x100000000ull,
                                           UINT64_MAX, UINT64_MAX - 511};
  int ops = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < ops; ++i) {
    if (v.empty()) v.push_back(0);
    size_t at = rng() % v.size();
    switch (rng() % 7) {
      case 0:
        v[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 1:
        v[at] = static_cast<uint8_t>(rng());
        break;
      case 2:
        put<uint16_t>(v, at,
                      static_cast<uint16_t>(kBoundary[rng() % std::size(kBoundary)] + rng() % 3));
        break;
      case 3:
        put<uint32_t>(v, at, static_cast<uint32_t>(kBoundary[rng() % std::size(kBoundary)]));
        break;
      case 4:
        put<uint64_t>(v, at, kBoundary[rng() % std::size(kBoundary)]);
        break;
      case 5:
        v.resize(rng() % (v.size() + 1));
        break;
      case 6:
        v.resize(v.size() + rng() % 64, static_cast<uint8_t>(rng()));
        break;
    }
  }
  return v;
}

// A queue of 8 at RAM offset 0 with a two-descriptor chain (header in
// region A, data in region B) made available; and a looping variant.
// With `wrap`, three chains are made available across the 65535 -> 0
// wrap of the free-running indices.
std::vector<uint8_t> virtqueue_seed(bool indirect, bool wrap = false) {
  std::vector<uint8_t> in(kVqHeaderBytes + 0x2000, 0);
  in[0] = 3;                    // size 8
  in[1] = 1 | 2;                // EVENT_IDX + INDIRECT
  put<uint16_t>(in, 4, 0x000);  // desc
  put<uint16_t>(in, 6, 0x080);  // avail
  put<uint16_t>(in, 8, 0x100);  // used
  size_t ram = kVqHeaderBytes;
  if (indirect) {
    put(in, ram + 0, virtio::VirtqDesc{kVqRegionA + 0x1000, 32, virtio::kDescFlagIndirect, 0});
    put(in, ram + 0x1000, virtio::VirtqDesc{kVqRegionA + 0x1800, 16, virtio::kDescFlagNext, 1});
    put(in, ram + 0x1010, virtio::VirtqDesc{kVqRegionB, 512, virtio::kDescFlagWrite, 0});
  } else {
    put(in, ram + 0, virtio::VirtqDesc{kVqRegionA + 0x1800, 16, virtio::kDescFlagNext, 1});
    put(in, ram + 16, virtio::VirtqDesc{kVqRegionB, 512, virtio::kDescFlagWrite, 0});
  }
  put<uint16_t>(in, ram + 0x80 + 2, 1);  // avail idx
  if (wrap) {
    in[1] |= 4;
    put<uint16_t>(in, 2, 0xfffe);
    put<uint16_t>(in, ram + 0x80 + 2, 1);  // 0xfffe, 0xffff, 0 available
  }
  return in;
}

// Header + data + status laid out in the body's input format.
std::vector<uint8_t> blk_seed(uint32_t type, uint64_t sector, const std::vector<uint8_t>& data,
                              bool data_writable) {
  std::vector<uint16_t> readable = {16}, writable;
  if (!data.empty())
    (data_writable ? writable : readable).push_back(static_cast<uint16_t>(data.size()));
  writable.push_back(1);
  std::vector<uint8_t> in(19, 0);
  in[0] = static_cast<uint8_t>(readable.size() - 1);
  in[1] = static_cast<uint8_t>(writable.size());
  size_t i = 0;
  for (uint16_t len : readable) put<uint16_t>(in, 3 + 2 * i++, len);
  for (uint16_t len : writable) put<uint16_t>(in, 3 + 2 * i++, len);
  virtio_blk_outhdr h{type, 0, sector};
  in.insert(in.end(), reinterpret_cast<uint8_t*>(&h), reinterpret_cast<uint8_t*>(&h) + 16);
  in.insert(in.end(), data.begin(), data.end());
  in.push_back(0xff);
  return in;
}

// Runs seeds and mutants; returns how often the body returned each result
// (index r+1 for result r, capped) so tests can check the inputs explored
// the interesting paths.
template <typename Body>
std::vector<size_t> run(Body body, const std::vector<std::vector<uint8_t>>& seeds, size_t n,
                        uint64_t seed) {
  std::vector<size_t> outcomes(8, 0);
  auto record = [&](const std::vector<uint8_t>& in) {
    int r = body(in.data(), in.size());
    EXPECT_GE(r, 0) << "property failed for input " << hex(in);
    outcomes[static_cast<size_t>(std::clamp(r + 1, 0, 7))]++;
    return r >= 0;
  };
  std::mt19937_64 rng(seed);
  for (const auto& s : seeds)
    if (!record(s)) return outcomes;
  for (size_t i = 0; i < n; ++i) {
    std::vector<uint8_t> in;
    if (i % 16 == 0) {
      in.resize(rng() % 512);
      for (auto& b : in) b = static_cast<uint8_t>(rng());
    } else {
      in = mutate(seeds[rng() % seeds.size()], rng);
    }
    if (!record(in)) return outcomes;
  }
  std::string summary;
  for (size_t i = 0; i < outcomes.size(); ++i)
    if (outcomes[i] != 0)
      summary += fmt::format(" result {}: {}", static_cast<int>(i) - 1, outcomes[i]);
  std::printf("%zu inputs;%s\n", n + seeds.size(), summary.c_str());
  return outcomes;
}

TEST(FuzzMutation, VirtqueueWalkerStaysInsideGuestMemory) {
  // The seeds must really produce chains, or mutations explore nothing.
  for (bool indirect : {false, true}) {
    auto seed = virtqueue_seed(indirect);
    ASSERT_EQ(exercise_virtqueue(seed.data(), seed.size()), 1) << "indirect " << indirect;
  }
  auto wrapped = virtqueue_seed(false, true);
  ASSERT_EQ(exercise_virtqueue(wrapped.data(), wrapped.size()), 3);
  size_t n = iterations(20000);
  auto outcomes =
      run(exercise_virtqueue,
          {virtqueue_seed(false), virtqueue_seed(true), virtqueue_seed(true, true)}, n, 1);
  size_t with_chains = 0;
  for (size_t i = 2; i < outcomes.size(); ++i) with_chains += outcomes[i];
  // A good share of mutants still walk at least one chain (mutations that
  // miss the ring leave it valid); otherwise the run proves little.
  EXPECT_GT(with_chains, n / 10) << "mutants walking a chain";
}

TEST(FuzzMutation, BlkRequestParserNeverReachesOutsideTheDisk) {
  std::vector<std::vector<uint8_t>> seeds = {
      blk_seed(VIRTIO_BLK_T_IN, 3, std::vector<uint8_t>(1024, 0), true),
      blk_seed(VIRTIO_BLK_T_OUT, 62, std::vector<uint8_t>(1024, 0x5a), false),
      blk_seed(VIRTIO_BLK_T_FLUSH, 0, {}, false),
      blk_seed(VIRTIO_BLK_T_GET_ID, 0, std::vector<uint8_t>(20, 0), true),
  };
  // DISCARD with two segments.
  std::vector<uint8_t> segs(32, 0);
  virtio_blk_discard_write_zeroes s1{60, 4, 0}, s2{0, 16, 0};
  std::memcpy(segs.data(), &s1, 16);
  std::memcpy(segs.data() + 16, &s2, 16);
  seeds.push_back(blk_seed(VIRTIO_BLK_T_DISCARD, 0, segs, false));
  seeds.push_back(blk_seed(VIRTIO_BLK_T_WRITE_ZEROES, 0, segs, false));
  for (const auto& s : seeds) EXPECT_GE(exercise_blk_request(s.data(), s.size()), 1);
  size_t n = iterations(50000);
  auto outcomes = run(exercise_blk_request, seeds, n, 2);
  EXPECT_GT(outcomes[3], n / 20) << "mutants executed against the disk";
  EXPECT_GT(outcomes[2], n / 100) << "mutants answered by the parser";
}

}  // namespace
}  // namespace skiff::fuzz

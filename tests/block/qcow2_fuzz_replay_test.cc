// GCC-built stand-in for the libFuzzer target (clang 14 cannot compile
// std::expected here): valid seed images, then random byte mutations of
// them, fed through the same open/read/write body for a bounded time. Under
// -DSKIFF_SANITIZE=ON any out-of-bounds access aborts the test.
#include <chrono>
#include <fstream>
#include <random>

#include "block/qcow2/create.h"
#include "block/qcow2/qcow2_image.h"
#include "block_test_util.h"
#include "fuzz/qcow2_fuzz_body.h"

namespace skiff {
namespace {

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::vector<std::vector<uint8_t>> seed_corpus(const testing::ScratchDir& dir) {
  std::vector<std::vector<uint8_t>> seeds;
  for (uint64_t cs : {512u, 4096u, 65536u}) {
    for (uint32_t version : {2u, 3u}) {
      const std::string p = dir.file("seed.qcow2");
      qcow2::CreateOptions co;
      co.size = 1 << 20;
      co.cluster_size = cs;
      co.version = version;
      if (!qcow2::create(p, co)) continue;
      {
        auto img = Qcow2Image::open(p, {});
        if (!img) continue;
        std::vector<uint8_t> d(3 * cs, 0x3c);
        (void)(*img)->write(cs / 2, d);
        std::vector<uint8_t> c(cs, 0x41);
        (void)(*img)->write_compressed(8, c);
        if (version == 3) (void)(*img)->write_zeroes(5 * cs, cs, false);
      }
      seeds.push_back(slurp(p));
    }
  }
  return seeds;
}

TEST(Qcow2FuzzReplay, SeedImagesOpenAndReadBack) {
  testing::ScratchDir dir;
  auto seeds = seed_corpus(dir);
  ASSERT_EQ(seeds.size(), 6u);
  for (const auto& s : seeds) {
    std::ofstream(dir.file("s.qcow2"), std::ios::binary)
        .write(reinterpret_cast<const char*>(s.data()), static_cast<std::streamsize>(s.size()));
    auto img = Qcow2Image::open(dir.file("s.qcow2"), {.read_only = true});
    ASSERT_TRUE(img) << img.error().what();
  }
}

TEST(Qcow2FuzzReplay, RandomMutationsNeverCrashWithinTimeBudget) {
  testing::ScratchDir dir;
  auto seeds = seed_corpus(dir);
  ASSERT_FALSE(seeds.empty());
  const char* env = std::getenv("SKIFF_FUZZ_SECONDS");
  const double budget = env ? std::atof(env) : 5.0;
  std::mt19937_64 rng(std::random_device{}());
  const auto start = std::chrono::steady_clock::now();
  const std::string path = dir.file("mutant.qcow2");
  int iterations = 0;
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < budget) {
    std::vector<uint8_t> m = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      // Bias mutations towards the header and the first metadata clusters.
      const size_t limit = (rng() % 2) ? std::min<size_t>(m.size(), 512) : m.size();
      const size_t at = rng() % limit;
      switch (rng() % 4) {
        case 0:
          m[at] = static_cast<uint8_t>(rng());
          break;
        case 1:
          m[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
        case 2:
          m[at] = (rng() % 2) ? 0xff : 0x00;
          break;
        default:
          m.resize(rng() % (m.size() + 1));
          break;
      }
      if (m.empty()) break;
    }
    fuzz::exercise_qcow2(m.data(), m.size(), path);
    ++iterations;
  }
  RecordProperty("iterations", iterations);
  EXPECT_GT(iterations, 0);
}

}  // namespace
}  // namespace skiff

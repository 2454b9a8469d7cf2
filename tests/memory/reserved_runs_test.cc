// ReservedRuns: one host range per guest-contiguous run, aligned to the
// run's largest page, and a failed MAP_FIXED leaves the placeholder behind.
#include "memory/reserved_runs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

#include "memory/proc_maps.h"

namespace skiff {
namespace {

constexpr uint64_t kMiB = 1 << 20;

uintptr_t addr(const uint8_t* p) {
  return reinterpret_cast<uintptr_t>(p);
}

TEST(ReservedRuns, AdjacentPiecesShareOneRunOthersDoNot) {
  // Given out of order: [0, 2M) + [2M, 3M) is one run; [8M, 9M) another.
  auto runs = ReservedRuns::reserve({{2 * kMiB, kMiB}, {8 * kMiB, kMiB}, {0, 2 * kMiB}});
  ASSERT_TRUE(runs) << runs.error().what();
  uint8_t* low = runs->host(0, 3 * kMiB);
  ASSERT_NE(low, nullptr);
  EXPECT_EQ(runs->host(2 * kMiB, kMiB), low + 2 * kMiB);
  EXPECT_EQ(runs->host(0, 3 * kMiB + 1), nullptr);
  EXPECT_EQ(runs->host(8 * kMiB - 1, 2), nullptr) << "no run covers the gap";
  EXPECT_NE(runs->host(8 * kMiB, kMiB), nullptr);
  // Host and guest addresses agree modulo 2 MiB (THP, KVM huge mappings).
  EXPECT_EQ(addr(low) % (2 * kMiB), 0u);
  EXPECT_EQ(addr(runs->host(8 * kMiB, kMiB)) % (2 * kMiB), 0u);
  // Reserved, not committed: PROT_NONE until a piece is mapped.
  std::string e = test::proc_entry("smaps", low).value_or("");
  EXPECT_NE(e.find(" ---p "), std::string::npos) << e;
}

TEST(ReservedRuns, RunIsAlignedToItsLargestPage) {
  // A 1 GiB-page piece after a 4 KiB one at guest 1 GiB - 4 KiB: the host
  // address of guest 1 GiB must be 1 GiB-aligned (hugetlb MAP_FIXED needs it).
  constexpr uint64_t kGiB = 1ull << 30;
  auto runs = ReservedRuns::reserve({{kGiB - 4096, 4096, 4096}, {kGiB, kGiB, kGiB}});
  ASSERT_TRUE(runs) << runs.error().what();
  uint8_t* big = runs->host(kGiB, kGiB);
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(addr(big) % kGiB, 0u);
  EXPECT_EQ(runs->host(kGiB - 4096, 4096), big - 4096);
}

TEST(ReservedRuns, BadPiecesAreRefused) {
  auto overlap = ReservedRuns::reserve({{0, 2 * kMiB}, {kMiB, 2 * kMiB}});
  ASSERT_FALSE(overlap);
  EXPECT_NE(overlap.error().message.find("guest RAM ranges at 0x0 and 0x100000 overlap"),
            std::string::npos)
      << overlap.error().message;
  EXPECT_FALSE(ReservedRuns::reserve({{0, 0}}));
  EXPECT_FALSE(ReservedRuns::reserve({{~uint64_t{0} - 4095, 8192}}));
  EXPECT_FALSE(ReservedRuns::reserve({{0, kMiB, 3 * 4096}}));
}

TEST(ReservedRuns, FailedMapLeavesThePlaceholder) {
  auto runs = ReservedRuns::reserve({{0, 4 * kMiB}});
  ASSERT_TRUE(runs) << runs.error().what();
  uint8_t* at = runs->host(kMiB, kMiB);
  // A directory cannot be mapped (ENODEV). Whether or not the kernel had
  // dropped the placeholder before failing, the range must stay reserved
  // (a later mmap elsewhere in the process must not land inside a run).
  int dir = ::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dir, 0);
  auto failed = runs->map(kMiB, kMiB, PROT_READ | PROT_WRITE, MAP_SHARED, dir, 0);
  ::close(dir);
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message.find("cannot map 0x100000 bytes at guest 0x100000"),
            std::string::npos)
      << failed.error().message;
  std::string e = test::proc_entry("smaps", at).value_or("(unmapped)");
  EXPECT_NE(e.find(" ---p "), std::string::npos) << "the hole is reserved again: " << e;
  // A map outside every run is refused without touching anything.
  EXPECT_FALSE(runs->map(8 * kMiB, kMiB, PROT_READ, MAP_PRIVATE, -1, 0));
  // And a good one lands exactly in place.
  auto ok = runs->map(kMiB, kMiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, -1, 0);
  ASSERT_TRUE(ok) << ok.error().what();
  EXPECT_EQ(*ok, at);
  (*ok)[0] = 1;
}

}  // namespace
}  // namespace skiff

// Huge page backed guest RAM (--memory hugepages=on) against the host's real
// hugetlb pool: the tests grow /proc/sys/vm/nr_hugepages themselves and put
// it back, so they run serially (tests/memory/CMakeLists.txt).
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "memory/guest_ram.h"
#include "memory/huge_page_pool.h"
#include "memory/proc_maps.h"

namespace skiff {
namespace {

constexpr uint64_t kMiB = 1 << 20;

Result<GuestRam> make(RamZone z) {
  return GuestRam::create(std::span(&z, 1));
}

using test::HugePagePool;

TEST(GuestRam, HugePagesComeFromTheHugetlbPool) {
  if (access(HugePagePool::kDir, F_OK) != 0)
    GTEST_SKIP() << "skipped: this kernel has no 2 MiB huge pages";
  HugePagePool pool;
  std::string why;
  if (!pool.grow(8, &why)) GTEST_SKIP() << "skipped: " << why;
  RamOptions o;
  o.hugepages = true;
  o.prefault = true;
  auto ram = make({"huge", {{0, 8 * kMiB}}, o});
  ASSERT_TRUE(ram) << ram.error().what();
  const auto& r = ram->memory().regions()[0];
  EXPECT_GE(r.fd, 0);
  std::string e = test::proc_entry("smaps", r.host).value_or("");
  EXPECT_NE(e.find("KernelPageSize:     2048 kB"), std::string::npos) << e;
  EXPECT_NE(test::smaps_vm_flags(e).find(" ht "), std::string::npos) << e;
  EXPECT_EQ(test::smaps_kb_field(e, "Shared_Hugetlb") + test::smaps_kb_field(e, "Private_Hugetlb"),
            8 * kMiB)
      << e;
  // Discard gives the pages back to the pool.
  uint64_t free_before = HugePagePool::read("free_hugepages");
  ram->discard_all();  // prefault populates again: net zero
  EXPECT_EQ(HugePagePool::read("free_hugepages"), free_before);
  ram = GuestRam{};
  EXPECT_EQ(HugePagePool::read("free_hugepages"), free_before + 4);
}

TEST(GuestRam, DiscardKeepsHugetlbRamOnItsPagesAndZeroesIt) {
  if (access(HugePagePool::kDir, F_OK) != 0)
    GTEST_SKIP() << "skipped: this kernel has no 2 MiB huge pages";
  HugePagePool pool;
  std::string why;
  if (!pool.grow(2, &why)) GTEST_SKIP() << "skipped: " << why;
  RamOptions o;
  o.hugepages = true;  // no prefault: pages are reserved at mmap, faulted on use
  auto ram = make({"", {{0, 4 * kMiB}}, o});
  ASSERT_TRUE(ram) << ram.error().what();
  ASSERT_TRUE(ram->memory().write_obj<uint64_t>(3 * kMiB, 77));
  uint64_t free_before = HugePagePool::read("free_hugepages");
  ram->discard_all();
  EXPECT_EQ(*ram->memory().read_obj<uint64_t>(3 * kMiB), 0u);
  // Both pages belong to the guest again (populated), not back in the pool
  // where another process could take them before the guest faults.
  EXPECT_EQ(HugePagePool::read("free_hugepages"), free_before - 1);
}

TEST(GuestRam, TooSmallHugePagePoolIsRefusedWithTheDocumentedMessage) {
  if (access(HugePagePool::kDir, F_OK) != 0)
    GTEST_SKIP() << "skipped: this kernel has no 2 MiB huge pages";
  uint64_t free = HugePagePool::read("free_hugepages");
  RamOptions o;
  o.hugepages = true;
  auto ram = make({"", {{0, (free + 1) * 2 * kMiB}}, o});
  ASSERT_FALSE(ram);
  std::string want = "--memory hugepages=on: needs " + std::to_string(free + 1) +
                     " 2 MiB pages, only " + std::to_string(free) +
                     " free in /sys/kernel/mm/hugepages/hugepages-2048kB; reserve with echo ";
  EXPECT_NE(ram.error().message.find(want), std::string::npos) << ram.error().message;
  EXPECT_NE(ram.error().message.find(" > /proc/sys/vm/nr_hugepages"), std::string::npos);
}

TEST(GuestRam, HugePagePoolIsCheckedForAllZonesTogether) {
  if (access(HugePagePool::kDir, F_OK) != 0)
    GTEST_SKIP() << "skipped: this kernel has no 2 MiB huge pages";
  HugePagePool pool;
  std::string why;
  if (!pool.grow(2, &why)) GTEST_SKIP() << "skipped: " << why;
  uint64_t free = HugePagePool::read("free_hugepages");
  RamOptions o;
  o.hugepages = true;
  // Each zone alone fits the free pool; both together do not.
  uint64_t each = (free / 2 + 1) * 2 * kMiB;
  std::vector<RamZone> zones{{"a", {{0, each}}, o}, {"b", {{each, each}}, o}};
  auto ram = GuestRam::create(zones);
  ASSERT_FALSE(ram);
  EXPECT_NE(ram.error().message.find("needs " + std::to_string(2 * (free / 2 + 1)) + " 2 MiB"),
            std::string::npos)
      << ram.error().message;
}

TEST(GuestRam, HugetlbZoneAfterAPrivateZoneIsOneHostSpanOnHugePages) {
  if (access(HugePagePool::kDir, F_OK) != 0)
    GTEST_SKIP() << "skipped: this kernel has no 2 MiB huge pages";
  HugePagePool pool;
  std::string why;
  if (!pool.grow(2, &why)) GTEST_SKIP() << "skipped: " << why;
  RamOptions huge;
  huge.hugepages = true;
  std::vector<RamZone> zones{{"a", {{0, 2 * kMiB}}, {}}, {"h", {{2 * kMiB, 4 * kMiB}}, huge}};
  auto ram = GuestRam::create(zones);
  ASSERT_TRUE(ram) << ram.error().what();
  auto regions = ram->memory().regions();
  ASSERT_EQ(regions.size(), 2u);
  EXPECT_EQ(regions[1].host, regions[0].host + 2 * kMiB);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(regions[1].host) % (2 * kMiB), 0u);
  ASSERT_TRUE(ram->memory().write_obj<uint64_t>(2 * kMiB - 4, 0x1122334455667788));
  uint32_t high = 0;
  ASSERT_EQ(pread(regions[1].fd, &high, 4, 0), 4);
  EXPECT_EQ(high, 0x11223344u);
  std::string e = test::proc_entry("smaps", regions[1].host).value_or("");
  EXPECT_NE(e.find("KernelPageSize:     2048 kB"), std::string::npos) << e;
}

}  // namespace
}  // namespace skiff

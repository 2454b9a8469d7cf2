// Where memory zones land in guest physical space (arch/x86/ram_layout.h,
// vmm/memory_layout.h): ACPI SRAT and the KVM memory slots both rely on it.
#include <gtest/gtest.h>

#include "vmm/memory_layout.h"

namespace skiff {
namespace {

constexpr uint64_t kMiB = 1 << 20, kGiB = 1ull << 30;

TEST(ZoneLayout, ZonesFollowEachOtherAndSplitAtThePciHole) {
  std::vector<uint64_t> sizes{1 * kGiB, 3 * kGiB, 512 * kMiB};
  auto z = x86::zone_ram_ranges(sizes);
  ASSERT_EQ(z.size(), 3u);
  ASSERT_EQ(z[0].size(), 1u);
  EXPECT_EQ(z[0][0].gpa, 0u);
  EXPECT_EQ(z[0][0].size, 1 * kGiB);
  // 2 GiB fit below the hole at 3 GiB; the last 1 GiB goes to 4 GiB.
  ASSERT_EQ(z[1].size(), 2u);
  EXPECT_EQ(z[1][0].gpa, 1 * kGiB);
  EXPECT_EQ(z[1][0].size, 2 * kGiB);
  EXPECT_EQ(z[1][1].gpa, 4 * kGiB);
  EXPECT_EQ(z[1][1].size, 1 * kGiB);
  ASSERT_EQ(z[2].size(), 1u);
  EXPECT_EQ(z[2][0].gpa, 5 * kGiB);
  EXPECT_EQ(z[2][0].size, 512 * kMiB);
}

TEST(ZoneLayout, AZoneEndingAtTheHoleSendsTheNextAbove4G) {
  std::vector<uint64_t> sizes{3 * kGiB, 1 * kGiB};
  auto z = x86::zone_ram_ranges(sizes);
  ASSERT_EQ(z[0].size(), 1u);
  ASSERT_EQ(z[1].size(), 1u);
  EXPECT_EQ(z[1][0].gpa, 4 * kGiB);
}

TEST(ZoneLayout, SingleRamIsTheOldLowHighSplit) {
  auto r = x86::ram_ranges(5 * kGiB);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].size, 3 * kGiB);
  EXPECT_EQ(r[1].gpa, 4 * kGiB);
  EXPECT_EQ(r[1].size, 2 * kGiB);
  EXPECT_EQ(x86::ram_ranges(256 * kMiB).size(), 1u);
}

TEST(ZoneLayout, MemoryZoneLayoutNamesZonesAndCarriesTheirBacking) {
  VmConfig c;
  c.memory_size = 3 * kGiB;
  MemoryZoneConfig a{"a", 1 * kGiB, {}};
  MemoryZoneConfig b{"b", 2 * kGiB, {}};
  b.backing.shared = true;
  b.backing.host_numa_node = 0;
  c.memory.zones = {a, b};
  auto zones = memory_zone_layout(c);
  ASSERT_EQ(zones.size(), 2u);
  EXPECT_EQ(zones[0].name, "a");
  EXPECT_EQ(zones[1].name, "b");
  EXPECT_TRUE(zones[1].options.shared);
  EXPECT_EQ(zones[1].ranges[0].gpa, 1 * kGiB);

  VmConfig plain;
  plain.memory_size = 4 * kGiB;
  plain.memory.backing.mergeable = true;
  auto one = memory_zone_layout(plain);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].name, "");
  EXPECT_TRUE(one[0].options.mergeable);
  EXPECT_EQ(one[0].ranges.size(), 2u);
}

}  // namespace
}  // namespace skiff

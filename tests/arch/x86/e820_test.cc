#include "arch/x86/e820.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>

#include "arch/x86/test_images.h"

namespace skiff::x86 {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kGiB = 1ull << 30;

// e820 never touches guest bytes, so a region's host pointer only has to be
// non-null: this lets the tests describe guests of many GiB for free.
uint8_t dummy;
GuestMemory layout(std::vector<std::pair<uint64_t, uint64_t>> ranges) {
  std::vector<MemoryRegion> r;
  for (auto [gpa, size] : ranges) r.push_back({gpa, size, &dummy});
  return *GuestMemory::create(r);
}

TEST(E820, SmallGuestHasLowRamLegacyHoleRamAboveOneMiBAndEcam) {
  auto mem = layout({{0, 512 * kMiB}});
  auto map = build_e820(mem);
  std::vector<E820Entry> want{
      {0, 0x9fc00, E820Type::kRam},
      {0x9fc00, 0x100000 - 0x9fc00, E820Type::kReserved},
      {0x100000, 512 * kMiB - 0x100000, E820Type::kRam},
      {0xe0000000, kMiB, E820Type::kReserved},
  };
  EXPECT_EQ(map, want);
}

TEST(E820, RamAboveFourGiBIsReportedAfterTheEcamWindow) {
  auto mem = layout({{0, 3 * kGiB}, {4 * kGiB, 2 * kGiB}});
  auto map = build_e820(mem);
  ASSERT_EQ(map.size(), 5u);
  EXPECT_EQ(map[2], (E820Entry{0x100000, 3 * kGiB - 0x100000, E820Type::kRam}));
  EXPECT_EQ(map[3], (E820Entry{0xe0000000, kMiB, E820Type::kReserved}));
  EXPECT_EQ(map[4], (E820Entry{4 * kGiB, 2 * kGiB, E820Type::kRam}));
}

TEST(E820, RamOverlappingThePciHoleIsNotReportedAsRam) {
  // A misconfigured region running into the hole must not make MMIO "RAM".
  auto mem = layout({{0, 0xd0000000}});
  auto map = build_e820(mem);
  for (const auto& e : map) {
    if (e.type != E820Type::kRam) continue;
    EXPECT_TRUE(e.addr + e.size <= 0xc0000000 || e.addr >= 4 * kGiB)
        << std::hex << e.addr << "+" << e.size;
  }
  EXPECT_EQ(low_ram_end(mem), 0xc0000000u);
}

TEST(E820, EntriesAreSortedAndDoNotOverlap) {
  auto mem = layout({{0, 3 * kGiB}, {4 * kGiB, kGiB}});
  auto map = build_e820(mem);
  for (size_t i = 1; i < map.size(); ++i)
    EXPECT_LE(map[i - 1].addr + map[i - 1].size, map[i].addr) << i;
}

TEST(E820, LowRamEndIsTheFirstHoleAboveOneMiB) {
  EXPECT_EQ(low_ram_end(layout({{0, 64 * kMiB}})), 64 * kMiB);
  EXPECT_EQ(low_ram_end(layout({{0, 3 * kGiB}, {4 * kGiB, kGiB}})), 3 * kGiB);
  // No RAM at 1 MiB at all.
  EXPECT_EQ(low_ram_end(layout({{0, 0x80000}})), 0x100000u);
}

TEST(E820, BootParamsTableHasCountAt0x1e8AndPacked20ByteEntriesAt0x2d0) {
  std::array<uint8_t, 4096> zp{};
  auto map = build_e820(layout({{0, 256 * kMiB}}));
  ASSERT_TRUE(write_boot_params_e820(zp, map));
  EXPECT_EQ(zp[0x1e8], 4);
  uint64_t addr, size;
  uint32_t type;
  // Entry 2 (RAM from 1 MiB) at 0x2d0 + 2 * 20.
  std::memcpy(&addr, &zp[0x2d0 + 40], 8);
  std::memcpy(&size, &zp[0x2d0 + 48], 8);
  std::memcpy(&type, &zp[0x2d0 + 56], 4);
  EXPECT_EQ(addr, 0x100000u);
  EXPECT_EQ(size, 255 * kMiB);
  EXPECT_EQ(type, 1u);
  // Nothing written past the 4 entries.
  EXPECT_EQ(zp[0x2d0 + 80], 0);
}

TEST(E820, BootParamsTableRejectsMoreThan128Entries) {
  std::array<uint8_t, 4096> zp{};
  std::vector<E820Entry> many(129, E820Entry{0, 4096, E820Type::kRam});
  auto r = write_boot_params_e820(zp, many);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("128"), std::string::npos);
}

TEST(E820, PvhMemmapCopiesAddrSizeTypeWithZeroReserved) {
  auto map = build_e820(layout({{0, 64 * kMiB}}));
  auto pvh = to_pvh_memmap(map);
  ASSERT_EQ(pvh.size(), map.size());
  EXPECT_EQ(pvh[1].addr, 0x9fc00u);
  EXPECT_EQ(pvh[1].type, 2u);
  EXPECT_EQ(pvh[2].size, 63 * kMiB);
  for (const auto& e : pvh) EXPECT_EQ(e.reserved, 0u);
}

TEST(E820, MultibootMmapEntriesStartWithASizeFieldOf20) {
  auto map = build_e820(layout({{0, 64 * kMiB}}));
  auto mb = to_multiboot_mmap(map);
  ASSERT_EQ(mb.size(), map.size() * 24);
  using testing::get;
  EXPECT_EQ(get<uint32_t>(mb, 0), 20u);
  EXPECT_EQ(get<uint64_t>(mb, 4), 0u);
  EXPECT_EQ(get<uint64_t>(mb, 12), 0x9fc00u);
  EXPECT_EQ(get<uint32_t>(mb, 20), 1u);
  EXPECT_EQ(get<uint32_t>(mb, 48), 20u);
  EXPECT_EQ(get<uint64_t>(mb, 48 + 4), 0x100000u);
  EXPECT_EQ(get<uint64_t>(mb, 48 + 12), 63 * kMiB);
}

}  // namespace
}  // namespace skiff::x86

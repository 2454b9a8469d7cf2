#include "memory/guest_memory.h"

#include <gtest/gtest.h>

#include <vector>

namespace skiff {
namespace {

struct TwoRegions {
  std::vector<uint8_t> low = std::vector<uint8_t>(0x1000, 0);
  std::vector<uint8_t> high = std::vector<uint8_t>(0x1000, 0);
  GuestMemory mem =
      *GuestMemory::create({{0x0, 0x1000, low.data()}, {0x10000, 0x1000, high.data()}});
};

TEST(GuestMemory, ReadsAndWritesInsideARegion) {
  TwoRegions t;
  ASSERT_TRUE(t.mem.write_obj<uint32_t>(0x10010, 0xdeadbeef));
  EXPECT_EQ(t.high[0x10], 0xef);
  auto v = t.mem.read_obj<uint32_t>(0x10010);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 0xdeadbeefu);
}

TEST(GuestMemory, RejectsRangeCrossingTheEndOfARegion) {
  TwoRegions t;
  EXPECT_FALSE(t.mem.slice(0xffe, 4));
  EXPECT_TRUE(t.mem.slice(0xffc, 4));
}

TEST(GuestMemory, RejectsRangeInAHole) {
  TwoRegions t;
  EXPECT_FALSE(t.mem.slice(0x2000, 1));
  EXPECT_FALSE(t.mem.read_obj<uint8_t>(0x20000));
}

TEST(GuestMemory, RejectsLengthThatOverflowsTheAddress) {
  TwoRegions t;
  EXPECT_FALSE(t.mem.slice(0x10, UINT64_MAX));
  EXPECT_FALSE(t.mem.slice(UINT64_MAX, 2));
}

TEST(GuestMemory, RejectsOverlappingOrEmptyRegions) {
  std::vector<uint8_t> a(0x2000);
  EXPECT_FALSE(GuestMemory::create({{0, 0x2000, a.data()}, {0x1000, 0x1000, a.data()}}));
  EXPECT_FALSE(GuestMemory::create({{0, 0, a.data()}}));
}

TEST(GuestMemory, ZeroLengthAtRegionEndIsAllowed) {
  TwoRegions t;
  auto s = t.mem.slice(0x1000, 0);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->empty());
}

}  // namespace
}  // namespace skiff

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

// Regions that continue each other in guest AND host space (what GuestRam
// makes of --memory-zone): one buffer cut in pieces.
struct AdjacentRegions {
  std::vector<uint8_t> buf = std::vector<uint8_t>(0x3000, 0);
  GuestMemory mem = *GuestMemory::create({{0x2000, 0x1000, buf.data() + 0x2000},
                                          {0x0, 0x1000, buf.data()},
                                          {0x1000, 0x1000, buf.data() + 0x1000}});
};

TEST(GuestMemory, RangeAcrossGuestAndHostAdjacentRegionsIsOneSpan) {
  AdjacentRegions t;
  EXPECT_EQ(t.mem.regions().size(), 3u);  // still one entry per backing
  auto s = t.mem.slice(0xff8, 0x10);
  ASSERT_TRUE(s) << s.error().what();
  EXPECT_EQ(s->data(), t.buf.data() + 0xff8);
  EXPECT_EQ(s->size(), 0x10u);
  // All three regions at once, and up to the very end.
  EXPECT_TRUE(t.mem.slice(0xffc, 0x1008));
  EXPECT_TRUE(t.mem.contains(0, 0x3000));
  EXPECT_FALSE(t.mem.contains(0, 0x3001));
  EXPECT_FALSE(t.mem.contains(0x2ffc, 8));
  ASSERT_TRUE(t.mem.write_obj<uint64_t>(0x1ffc, 0x8877665544332211));
  EXPECT_EQ(t.buf[0x1ffc], 0x11);
  EXPECT_EQ(t.buf[0x2003], 0x88);
  EXPECT_EQ(*t.mem.read_obj<uint64_t>(0x1ffc), 0x8877665544332211u);
  EXPECT_EQ(t.mem.gpa_of(std::span(t.buf.data() + 0xff0, 0x20)), 0xff0u);
}

TEST(GuestMemory, DiscardStaysWithinOneBacking) {
  AdjacentRegions t;
  EXPECT_EQ(t.mem.page_size(0x1000), 4096u);
  auto r = t.mem.discard(0, 0x2000);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("crosses from one RAM backing into the next"), std::string::npos)
      << r.error().message;
}

TEST(GuestMemory, RefusesCrossingWhereHostAddressesAreApart) {
  // Guest-adjacent, but 0x1000 bytes apart on the host: a crossing access
  // would read the wrong bytes.
  std::vector<uint8_t> buf(0x3000);
  auto mem =
      *GuestMemory::create({{0x0, 0x1000, buf.data()}, {0x1000, 0x1000, buf.data() + 0x2000}});
  EXPECT_FALSE(mem.slice(0xffe, 4));
  EXPECT_FALSE(mem.contains(0xffe, 4));
  EXPECT_FALSE(mem.write_obj<uint32_t>(0xffe, 1));
  EXPECT_FALSE(mem.read_obj<uint32_t>(0xffe));
  EXPECT_FALSE(mem.gpa_of(std::span(buf.data() + 0xff0, 0x20)));
  // Each side on its own is fine.
  EXPECT_TRUE(mem.slice(0xffc, 4));
  auto s = mem.slice(0x1000, 4);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->data(), buf.data() + 0x2000);
}

TEST(GuestMemory, RefusesCrossingWhereGuestAddressesAreApart) {
  // Host-adjacent, but with a guest hole between: [0x1000, 0x2000) is not RAM.
  std::vector<uint8_t> buf(0x2000);
  auto mem =
      *GuestMemory::create({{0x0, 0x1000, buf.data()}, {0x2000, 0x1000, buf.data() + 0x1000}});
  EXPECT_FALSE(mem.slice(0xffe, 4));
  EXPECT_FALSE(mem.slice(0x1ffe, 4));
  EXPECT_FALSE(mem.contains(0, 0x3000));
}

TEST(GuestMemory, CrossingNearTheTopOfTheAddressSpaceCannotOverflow) {
  std::vector<uint8_t> buf(0x2000);
  constexpr uint64_t kTop = ~uint64_t{0};
  // The last two pages below 2^64 - 0x1000 (a region ending exactly at 2^64
  // wraps and is refused below).
  uint64_t base = kTop - 0x2fff;
  auto mem = *GuestMemory::create(
      {{base, 0x1000, buf.data()}, {base + 0x1000, 0x1000, buf.data() + 0x1000}});
  EXPECT_TRUE(mem.slice(base + 0xff0, 0x20));
  EXPECT_TRUE(mem.contains(base, 0x2000));
  EXPECT_FALSE(mem.contains(base, 0x2001));
  EXPECT_FALSE(mem.slice(base + 0xff0, kTop));
  EXPECT_FALSE(mem.slice(base + 0x1ff0, kTop - 0x10));
  EXPECT_FALSE(mem.slice(kTop, 2));
  EXPECT_FALSE(mem.read_obj<uint64_t>(kTop - 3));
  EXPECT_FALSE(GuestMemory::create({{kTop - 0xfff, 0x1000, buf.data()}}));
  // A host range that would wrap is refused too (never dereferenced).
  auto* high = reinterpret_cast<uint8_t*>(UINTPTR_MAX - 0x7ff);
  auto wrapped = GuestMemory::create({{0x0, 0x1000, high}});
  ASSERT_FALSE(wrapped);
  EXPECT_NE(wrapped.error().message.find("wraps around the host address space"), std::string::npos);
}

}  // namespace
}  // namespace skiff

// Memory zones that follow each other in guest space are one host span
// (GuestRam reserves each guest-contiguous run and maps the zones into it),
// so a guest buffer across a zone boundary works. Checked against the
// kernel: the bytes land in each zone's own backing (pread of the memfd),
// the reservation is aligned and is gone after the GuestRam.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <vector>

#include "memory/guest_ram.h"
#include "memory/proc_maps.h"
#include "memory/ram_backing.h"

namespace skiff {
namespace {

constexpr uint64_t kMiB = 1 << 20;

RamOptions shared() {
  RamOptions o;
  o.shared = true;
  return o;
}

// The 16 bytes 0x01..0x10 written across the boundary at 2 MiB of a
// two-zone GuestRam; returns the ram for the caller to look at the backings.
GuestRam write_across_boundary(RamOptions a, RamOptions b) {
  std::vector<RamZone> zones{{"a", {{0, 2 * kMiB}}, a}, {"b", {{2 * kMiB, 2 * kMiB}}, b}};
  auto ram = GuestRam::create(zones);
  EXPECT_TRUE(ram) << ram.error().what();
  if (!ram) return {};
  std::array<uint8_t, 16> bytes{};
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i + 1);
  auto s = ram->memory().slice(2 * kMiB - 8, 16);
  EXPECT_TRUE(s) << s.error().what();
  EXPECT_TRUE(ram->memory().write(2 * kMiB - 8, bytes));
  std::array<uint8_t, 16> back{};
  EXPECT_TRUE(ram->memory().read(2 * kMiB - 8, back));
  EXPECT_EQ(back, bytes);
  return std::move(*ram);
}

std::array<uint8_t, 8> pread8(int fd, uint64_t offset) {
  std::array<uint8_t, 8> v{};
  EXPECT_EQ(pread(fd, v.data(), v.size(), static_cast<off_t>(offset)), 8);
  return v;
}

constexpr std::array<uint8_t, 8> kLow{1, 2, 3, 4, 5, 6, 7, 8};
constexpr std::array<uint8_t, 8> kHigh{9, 10, 11, 12, 13, 14, 15, 16};

TEST(ZoneSpan, PrivateThenMemfdZoneTakeABufferAcrossTheBoundary) {
  GuestRam ram = write_across_boundary({}, shared());
  auto regions = ram.memory().regions();
  ASSERT_EQ(regions.size(), 2u);  // KVM and vhost-user still see each backing
  EXPECT_EQ(regions[0].fd, -1);
  ASSERT_GE(regions[1].fd, 0);
  EXPECT_EQ(regions[1].host, regions[0].host + 2 * kMiB);
  std::array<uint8_t, 8> low{};
  std::memcpy(low.data(), regions[0].host + 2 * kMiB - 8, 8);
  EXPECT_EQ(low, kLow);
  // The second half is in zone b's file, at its start.
  EXPECT_EQ(pread8(regions[1].fd, 0), kHigh);
  // Each piece keeps its own kind of mapping.
  EXPECT_NE(test::proc_entry("smaps", regions[0].host).value_or("").find(" rw-p "),
            std::string::npos);
  EXPECT_NE(test::proc_entry("smaps", regions[1].host).value_or("").find("memfd:skiff-ram-b"),
            std::string::npos);
}

TEST(ZoneSpan, TwoMemfdZonesTakeABufferAcrossTheBoundary) {
  GuestRam ram = write_across_boundary(shared(), shared());
  auto regions = ram.memory().regions();
  ASSERT_EQ(regions.size(), 2u);
  ASSERT_GE(regions[0].fd, 0);
  ASSERT_GE(regions[1].fd, 0);
  EXPECT_NE(regions[0].fd, regions[1].fd);
  EXPECT_EQ(pread8(regions[0].fd, 2 * kMiB - 8), kLow);
  EXPECT_EQ(pread8(regions[1].fd, 0), kHigh);
}

TEST(ZoneSpan, TheHoleBetweenRunsIsStillNotRam) {
  // Zone a ends at 2 MiB; zone b continues at 4 GiB (as across the PCI
  // hole): two runs, and nothing crosses between them.
  std::vector<RamZone> zones{{"a", {{0, 2 * kMiB}}, {}}, {"b", {{4ull << 30, 2 * kMiB}}, shared()}};
  auto ram = GuestRam::create(zones);
  ASSERT_TRUE(ram) << ram.error().what();
  EXPECT_FALSE(ram->memory().slice(2 * kMiB - 8, 16));
  EXPECT_FALSE(ram->memory().contains(0, 2 * kMiB + 1));
  EXPECT_TRUE(ram->memory().slice((4ull << 30) + 8, 16));
}

TEST(ZoneSpan, ReservationAgreesWithGuestAddressesModulo2MiB) {
  // A run starting off a 2 MiB boundary: the host address has the same
  // offset within its 2 MiB page, so THP can back guest huge pages.
  RamZone z{"", {{0x5000, 4 * kMiB}}, {}};
  auto ram = GuestRam::create(std::span(&z, 1));
  ASSERT_TRUE(ram) << ram.error().what();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ram->memory().regions()[0].host) % (2 * kMiB), 0x5000u);
}

TEST(ZoneSpan, DestroyingTheRamReleasesTheWholeReservation) {
  std::vector<RamZone> zones{{"a", {{0, 2 * kMiB}}, {}}, {"b", {{2 * kMiB, 4 * kMiB}}, shared()}};
  uint8_t* host = nullptr;
  {
    auto ram = GuestRam::create(zones);
    ASSERT_TRUE(ram) << ram.error().what();
    host = ram->memory().regions()[0].host;
    ASSERT_TRUE(test::proc_entry("smaps", host));
    ASSERT_TRUE(test::proc_entry("smaps", host + 6 * kMiB - 1));
  }
  EXPECT_FALSE(test::proc_entry("smaps", host));
  EXPECT_FALSE(test::proc_entry("smaps", host + 2 * kMiB));
  EXPECT_FALSE(test::proc_entry("smaps", host + 6 * kMiB - 1));
}

TEST(ZoneSpan, OverlappingZonesAreRefusedBeforeAnythingIsMapped) {
  std::vector<RamZone> zones{{"a", {{0, 4 * kMiB}}, {}}, {"b", {{2 * kMiB, 2 * kMiB}}, shared()}};
  auto ram = GuestRam::create(zones);
  ASSERT_FALSE(ram);
  EXPECT_NE(ram.error().message.find("guest RAM ranges at 0x0 and 0x200000 overlap"),
            std::string::npos)
      << ram.error().message;
}

TEST(ZoneSpan, ReserveAddressSpaceHonoursAlignmentAndPhase) {
  for (uint64_t phase : {uint64_t{0}, uint64_t{0x1000}, 2 * kMiB - 0x1000}) {
    auto p = reserve_address_space(kMiB, 2 * kMiB, phase);
    ASSERT_TRUE(p) << p.error().what();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(*p) % (2 * kMiB), phase);
    auto e = test::proc_entry("smaps", *p).value_or("");
    EXPECT_NE(e.find(" ---p "), std::string::npos) << e;  // PROT_NONE, nothing committed
    EXPECT_EQ(munmap(*p, kMiB), 0);
  }
  EXPECT_FALSE(reserve_address_space(kMiB, 3 * kMiB, 0));
  EXPECT_FALSE(reserve_address_space(kMiB, 2 * kMiB, 2 * kMiB));
  EXPECT_FALSE(reserve_address_space(~uint64_t{0} - kMiB, 2 * kMiB, 0));
}

}  // namespace
}  // namespace skiff

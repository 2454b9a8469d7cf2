// GuestRam against the real kernel: each RamOptions switch is checked in
// /proc/self/smaps, numa_maps or the memfd itself, not in skiff's own state.
#include "memory/guest_ram.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

#include "memory/proc_maps.h"
#include "memory/ram_backing.h"

namespace skiff {
namespace {

constexpr uint64_t kMiB = 1 << 20;

RamZone zone(uint64_t size, RamOptions o, std::string name = "") {
  return {std::move(name), {{0, size}}, o};
}

Result<GuestRam> make(RamZone z) {
  return GuestRam::create(std::span(&z, 1));
}

std::string smaps_of(const GuestRam& ram, size_t region = 0) {
  auto e = test::proc_entry("smaps", ram.memory().regions()[region].host);
  return e ? *e : "";
}

TEST(GuestRam, PrivateRamHasNoFileAndIsMappedPrivate) {
  auto ram = make(zone(4 * kMiB, {}));
  ASSERT_TRUE(ram) << ram.error().what();
  const auto& r = ram->memory().regions()[0];
  EXPECT_EQ(r.fd, -1);
  std::string e = smaps_of(*ram);
  EXPECT_NE(e.find(" rw-p "), std::string::npos) << e;
  EXPECT_EQ(e.find("memfd:"), std::string::npos) << e;
}

TEST(GuestRam, SharedRamIsAMemfdMappedShared) {
  RamOptions o;
  o.shared = true;
  auto ram = make(zone(4 * kMiB, o, "z0"));
  ASSERT_TRUE(ram) << ram.error().what();
  const auto& r = ram->memory().regions()[0];
  ASSERT_GE(r.fd, 0);
  EXPECT_EQ(r.fd_offset, 0u);
  std::string e = smaps_of(*ram);
  EXPECT_NE(e.find(" rw-s "), std::string::npos) << e;
  EXPECT_NE(e.find("memfd:skiff-ram-z0"), std::string::npos) << e;
  EXPECT_NE(fcntl(r.fd, F_GETFD) & FD_CLOEXEC, 0);
  // A write through guest memory is in the file another process would map.
  ASSERT_TRUE(ram->memory().write_obj<uint64_t>(0x1000, 0x1122334455667788));
  uint64_t v = 0;
  ASSERT_EQ(pread(r.fd, &v, sizeof v, 0x1000), 8);
  EXPECT_EQ(v, 0x1122334455667788u);
}

TEST(GuestRam, ALongZoneIdStillMakesAValidMemfdName) {
  RamOptions o;
  o.shared = true;
  auto ram = make(zone(2 * kMiB, o, std::string(1000, 'z')));
  ASSERT_TRUE(ram) << ram.error().what();
  EXPECT_NE(smaps_of(*ram).find("memfd:skiff-ram-zzzz"), std::string::npos);
}

TEST(GuestRam, ZoneSplitByTheHoleIsOneFileAtIncreasingOffsets) {
  RamOptions o;
  o.shared = true;
  RamZone z{"z", {{0, 2 * kMiB}, {4ull << 30, 2 * kMiB}}, o};
  auto ram = GuestRam::create(std::span(&z, 1));
  ASSERT_TRUE(ram) << ram.error().what();
  auto regions = ram->memory().regions();
  ASSERT_EQ(regions.size(), 2u);
  EXPECT_EQ(regions[0].fd, regions[1].fd);
  EXPECT_EQ(regions[1].fd_offset, 2 * kMiB);
  ASSERT_TRUE(ram->memory().write_obj<uint32_t>((4ull << 30) + 8, 0xabcd));
  uint32_t v = 0;
  ASSERT_EQ(pread(regions[0].fd, &v, 4, static_cast<off_t>(2 * kMiB + 8)), 4);
  EXPECT_EQ(v, 0xabcdu);
  struct stat st {};
  ASSERT_EQ(fstat(regions[0].fd, &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 4 * kMiB);
}

TEST(GuestRam, ZonesGetTheirOwnBacking) {
  RamOptions shared;
  shared.shared = true;
  std::vector<RamZone> zones{{"a", {{0, 2 * kMiB}}, {}}, {"b", {{2 * kMiB, 2 * kMiB}}, shared}};
  auto ram = GuestRam::create(zones);
  ASSERT_TRUE(ram) << ram.error().what();
  auto regions = ram->memory().regions();
  ASSERT_EQ(regions.size(), 2u);
  EXPECT_EQ(regions[0].fd, -1);
  EXPECT_GE(regions[1].fd, 0);
  EXPECT_EQ(ram->memory().total_size(), 4 * kMiB);
}

TEST(GuestRam, MergeableRamIsMarkedForKsm) {
  RamOptions o;
  o.mergeable = true;
  auto ram = make(zone(4 * kMiB, o));
  ASSERT_TRUE(ram) << ram.error().what();
  EXPECT_NE(test::smaps_vm_flags(smaps_of(*ram)).find(" mg "), std::string::npos) << smaps_of(*ram);
  auto plain = make(zone(4 * kMiB, {}));
  ASSERT_TRUE(plain);
  EXPECT_EQ(test::smaps_vm_flags(smaps_of(*plain)).find(" mg "), std::string::npos);
}

TEST(GuestRam, MergeableSharedRamIsRefusedAsKsmWouldIgnoreIt) {
  RamOptions o;
  o.mergeable = true;
  o.shared = true;
  auto ram = make(zone(4 * kMiB, o));
  ASSERT_FALSE(ram);
  EXPECT_NE(ram.error().message.find("mergeable=on needs private memory"), std::string::npos)
      << ram.error().message;
}

TEST(GuestRam, ThpOnAndOffAreAdvisedOnTheMapping) {
  RamOptions on;
  on.thp = Thp::kOn;
  RamOptions off;
  off.thp = Thp::kOff;
  auto a = make(zone(4 * kMiB, on));
  auto b = make(zone(4 * kMiB, off));
  ASSERT_TRUE(a && b);
  std::string fa = test::smaps_vm_flags(smaps_of(*a)), fb = test::smaps_vm_flags(smaps_of(*b));
  EXPECT_NE(fa.find(" hg "), std::string::npos) << fa;
  EXPECT_EQ(fa.find(" nh "), std::string::npos) << fa;
  EXPECT_NE(fb.find(" nh "), std::string::npos) << fb;
  EXPECT_EQ(fb.find(" hg "), std::string::npos) << fb;
}

TEST(GuestRam, HostNumaNodeBindsTheMapping) {
  for (bool shared : {false, true}) {
    RamOptions o;
    o.host_numa_node = 0;
    o.shared = shared;
    auto ram = make(zone(4 * kMiB, o));
    ASSERT_TRUE(ram) << ram.error().what();
    auto e = test::proc_entry("numa_maps", ram->memory().regions()[0].host);
    ASSERT_TRUE(e) << "no numa_maps entry (kernel without CONFIG_NUMA?)";
    EXPECT_NE(e->find(" bind:0"), std::string::npos) << "shared=" << shared << ": " << *e;
  }
}

TEST(GuestRam, UnknownHostNumaNodeIsRefusedByNumber) {
  RamOptions o;
  o.host_numa_node = 977;
  auto ram = make(zone(4 * kMiB, o));
  ASSERT_FALSE(ram);
  EXPECT_NE(ram.error().message.find("host_numa_node=977: no such online host NUMA node"),
            std::string::npos)
      << ram.error().message;
}

TEST(GuestRam, PrefaultPopulatesEveryPageAndPlainRamDoesNot) {
  for (bool shared : {false, true}) {
    RamOptions o;
    o.prefault = true;
    o.shared = shared;
    auto ram = make(zone(32 * kMiB, o));
    ASSERT_TRUE(ram) << ram.error().what();
    EXPECT_GE(test::smaps_kb_field(smaps_of(*ram), "Rss"), 31 * kMiB) << "shared=" << shared << "\n"
                                                                      << smaps_of(*ram);
  }
  auto lazy = make(zone(32 * kMiB, {}));
  ASSERT_TRUE(lazy);
  EXPECT_LT(test::smaps_kb_field(smaps_of(*lazy), "Rss"), 1 * kMiB);
}

TEST(GuestRam, DiscardAllFreesSharedPagesInTheFile) {
  RamOptions o;
  o.shared = true;
  auto ram = make(zone(8 * kMiB, o));
  ASSERT_TRUE(ram) << ram.error().what();
  auto bytes = *ram->memory().slice(0, 8 * kMiB);
  std::memset(bytes.data(), 0x5a, bytes.size());
  struct stat st {};
  ASSERT_EQ(fstat(ram->memory().regions()[0].fd, &st), 0);
  EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, 8 * kMiB);
  ram->discard_all();
  ASSERT_EQ(fstat(ram->memory().regions()[0].fd, &st), 0);
  EXPECT_EQ(st.st_blocks, 0);  // MADV_DONTNEED alone would leave them in the memfd
  EXPECT_EQ(*ram->memory().read_obj<uint64_t>(4 * kMiB), 0u);
}

TEST(GuestRam, DiscardAllZeroesPrivateRam) {
  auto ram = make(zone(4 * kMiB, {}));
  ASSERT_TRUE(ram);
  ASSERT_TRUE(ram->memory().write_obj<uint64_t>(0x2000, 42));
  ram->discard_all();
  EXPECT_EQ(*ram->memory().read_obj<uint64_t>(0x2000), 0u);
  EXPECT_LT(test::smaps_kb_field(smaps_of(*ram), "Rss"), 64 * 1024);
}

TEST(GuestRam, SizesAndHugePageSizesAreCheckedByValue) {
  RamOptions huge;
  huge.hugepages = true;
  auto odd = make(zone(3 * kMiB, huge));
  ASSERT_FALSE(odd);
  EXPECT_NE(odd.error().message.find("size=3145728 is not a multiple of the 2 MiB huge page size"),
            std::string::npos)
      << odd.error().message;
  huge.hugepage_size = 4 * kMiB;
  auto bad = make(zone(4 * kMiB, huge));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("hugepage_size=4194304 is not 2M or 1G"), std::string::npos)
      << bad.error().message;
}

TEST(GuestRam, OneGibPagesOnAHostWithoutThemAreRefusedByName) {
  if (access("/sys/kernel/mm/hugepages/hugepages-1048576kB", F_OK) == 0)
    GTEST_SKIP() << "skipped: this host has a 1 GiB huge page pool";
  RamOptions o;
  o.hugepages = true;
  o.hugepage_size = kHugePage1G;
  auto ram = make(zone(kHugePage1G, o));
  ASSERT_FALSE(ram);
  EXPECT_NE(ram.error().message.find(
                "this host has no 1 GiB huge pages (/sys/kernel/mm/hugepages/hugepages-1048576kB "
                "is missing)"),
            std::string::npos)
      << ram.error().message;
}

TEST(GuestRam, HugePageZoneOffAHugePageBoundaryIsRefusedBeforeThePoolIsAsked) {
  // A 1 MiB private zone puts the next zone at 1 MiB: KVM could not map
  // its 2 MiB pages as huge pages, and the hugetlb mapping would not line up.
  RamOptions huge;
  huge.hugepages = true;
  std::vector<RamZone> zones{{"small", {{0, kMiB}}, {}}, {"huge", {{kMiB, 2 * kMiB}}, huge}};
  auto ram = GuestRam::create(zones);
  ASSERT_FALSE(ram);
  EXPECT_NE(ram.error().message.find("--memory-zone id=huge: guest range [0x100000, +0x200000) "
                                     "is not aligned to its 2 MiB pages"),
            std::string::npos)
      << ram.error().message;
}

}  // namespace
}  // namespace skiff

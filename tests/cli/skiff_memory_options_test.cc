// --memory and --memory-zone.
#include <gtest/gtest.h>

#include "cli/skiff_options.h"

namespace skiff::cli {
namespace {

std::variant<SkiffArgs, EarlyExit> parse(std::vector<std::string> args) {
  args.insert(args.begin(), {"skiff", "--kernel", "/k"});
  return parse_skiff_args(args);
}

constexpr uint64_t kMiB = 1 << 20, kGiB = 1ull << 30;

TEST(SkiffMemoryOptions, DefaultIsPrivate512MiBWithTheHostsThpPolicy) {
  auto r = parse({});
  auto* a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  EXPECT_EQ(a->vm.memory_size, 512 * kMiB);
  const RamOptions& o = a->vm.memory.backing;
  EXPECT_FALSE(o.shared || o.hugepages || o.mergeable || o.prefault);
  EXPECT_EQ(o.thp, Thp::kDefault);
  EXPECT_FALSE(o.host_numa_node);
  EXPECT_TRUE(a->vm.memory.zones.empty());
}

TEST(SkiffMemoryOptions, EveryMemoryOptionIsParsed) {
  auto r = parse(
      {"--memory", "size=2G,hugepages=on,hugepage_size=1G,prefault=on,host_numa_node=0,thp=off"});
  auto* a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  EXPECT_EQ(a->vm.memory_size, 2 * kGiB);
  const RamOptions& o = a->vm.memory.backing;
  EXPECT_TRUE(o.hugepages);
  EXPECT_EQ(o.hugepage_size, kGiB);
  EXPECT_TRUE(o.prefault);
  EXPECT_EQ(o.host_numa_node, 0u);
  EXPECT_EQ(o.thp, Thp::kOff);

  auto m = parse({"--memory", "size=1G,mergeable=on,thp=on"});
  auto* b = std::get_if<SkiffArgs>(&m);
  ASSERT_NE(b, nullptr) << std::get<EarlyExit>(m).text;
  EXPECT_TRUE(b->vm.memory.backing.mergeable);
  EXPECT_EQ(b->vm.memory.backing.thp, Thp::kOn);
  EXPECT_EQ(b->vm.memory.backing.hugepage_size, 2 * kMiB);  // the default when hugepages=on

  auto s = parse({"--memory", "shared=on"});  // size stays 512M
  auto* c = std::get_if<SkiffArgs>(&s);
  ASSERT_NE(c, nullptr) << std::get<EarlyExit>(s).text;
  EXPECT_TRUE(c->vm.memory.backing.shared);
  EXPECT_EQ(c->vm.memory_size, 512 * kMiB);
}

TEST(SkiffMemoryOptions, BadMemoryValuesAreUsageErrorsNamingTheValue) {
  struct Case {
    const char* value;
    const char* message;
  };
  for (auto [value, message] : std::initializer_list<Case>{
           {"size=1G,hugepages=on,hugepage_size=4M", "hugepage_size=4M is not 2M or 1G"},
           {"size=1G,hugepage_size=2M", "hugepage_size=2M needs hugepages=on"},
           {"size=1025M,hugepages=on", "size=1025M is not a multiple of the 2 MiB huge page size"},
           {"size=1G,hugepages=on,hugepage_size=1G,prefault=on,x=1", "x"},
           {"size=3G,hugepages=on,hugepage_size=1G,mergeable=on",
            "mergeable=on needs private memory"},
           {"size=1G,shared=on,mergeable=on", "mergeable=on needs private memory"},
           {"size=1G,thp=maybe", "maybe"},
           {"size=1G,host_numa_node=-1", "-1"},
           {"size=1G,host_numa_node=4096", "4096"},
           {"size=4M", "size=4M is below the minimum"},
           {"size=10000001", "size=10000001 is not a multiple of 4 KiB"},
       }) {
    auto r = parse({"--memory", value});
    auto* e = std::get_if<EarlyExit>(&r);
    ASSERT_NE(e, nullptr) << value;
    EXPECT_EQ(e->status, 2) << value;
    EXPECT_NE(e->text.find(message), std::string::npos) << value << ": " << e->text;
  }
}

TEST(SkiffMemoryOptions, ZonesKeepTheirOrderAndBackingAndSumToTheRamSize) {
  auto r = parse({"--memory", "size=0,thp=on", "--memory-zone",
                  "id=z0,size=1G,shared=on,host_numa_node=0", "--memory-zone",
                  "id=z1,size=2G,hugepages=on,prefault=on", "--memory-zone",
                  "id=z2,size=64M,mergeable=on"});
  auto* a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  const auto& z = a->vm.memory.zones;
  ASSERT_EQ(z.size(), 3u);
  EXPECT_EQ(a->vm.memory_size, 3 * kGiB + 64 * kMiB);
  EXPECT_EQ(z[0].id, "z0");
  EXPECT_EQ(z[0].size, kGiB);
  EXPECT_TRUE(z[0].backing.shared);
  EXPECT_EQ(z[0].backing.host_numa_node, 0u);
  EXPECT_EQ(z[1].id, "z1");
  EXPECT_TRUE(z[1].backing.hugepages);
  EXPECT_TRUE(z[1].backing.prefault);
  EXPECT_FALSE(z[1].backing.shared);  // hugepages imply shared in GuestRam, not in the config
  EXPECT_TRUE(z[2].backing.mergeable);
  for (const auto& zone : z) EXPECT_EQ(zone.backing.thp, Thp::kOn);  // from --memory

  // Without --memory at all the default size does not get in the way.
  auto n = parse({"--memory-zone", "id=a,size=256M"});
  auto* b = std::get_if<SkiffArgs>(&n);
  ASSERT_NE(b, nullptr) << std::get<EarlyExit>(n).text;
  EXPECT_EQ(b->vm.memory_size, 256 * kMiB);
}

TEST(SkiffMemoryOptions, BadZonesAreUsageErrorsNamingTheValue) {
  struct Case {
    std::vector<std::string> args;
    const char* message;
  };
  for (const auto& [args, message] : std::vector<Case>{
           {{"--memory", "size=1G", "--memory-zone", "id=a,size=1G"},
            "size=1G with --memory-zone: give --memory size=0"},
           {{"--memory", "size=0,shared=on", "--memory-zone", "id=a,size=1G"},
            "shared=on with --memory-zone: give shared= on each --memory-zone"},
           {{"--memory-zone", "size=1G"}, "id=ID is required"},
           {{"--memory-zone", "id=a"}, "--memory-zone id=a: size=SIZE is required"},
           {{"--memory-zone", "id=a,size=1G", "--memory-zone", "id=a,size=1G"},
            "id=a is given twice"},
           {{"--memory-zone", "id=a,size=3M,hugepages=on"},
            "--memory-zone id=a: size=3M is not a multiple of the 2 MiB huge page size"},
           {{"--memory-zone", "id=a,size=0"}, "--memory-zone id=a: size=0: RAM must not be empty"},
           {{"--memory-zone", "id=a,size=1G,file=/no/such/dir/x"},
            "--memory-zone id=a: file=/no/such/dir/x: directory /no/such/dir does not exist"},
           {{"--memory-zone", "id=a,size=1G,file=/dev/null,shared=on"},
            "--memory-zone id=a: file=/dev/null is a character device"},
           {{"--memory-zone", "id=a,size=1G,file=/no-such-file"},
            "file=/no-such-file does not exist: with shared=off the file is only read"},
           {{"--memory-zone", "id=a,size=1G,file="}, "--memory-zone id=a: file= is empty"},
           {{"--memory-zone", "id=a,size=1G,file=/tmp,hugepages=on"},
            "file=/tmp with hugepages=on: give one of them"},
           {{"--memory-zone", "id=a,size=1G,file=/tmp,mergeable=on"},
            "mergeable=on with file=/tmp"},
           {{"--memory", "size=1G,file=/tmp"}, "--memory: file=/tmp is a --memory-zone option"},
           {{"--memory-zone", "id=a,size=4M"}, "the zones add up to 4194304 bytes"},
           {{"--memory-zone", "id=a,size=1G,shared=on,mergeable=on"},
            "--memory-zone id=a: mergeable=on needs private memory"},
       }) {
    auto r = parse(args);
    auto* e = std::get_if<EarlyExit>(&r);
    ASSERT_NE(e, nullptr) << message;
    EXPECT_EQ(e->status, 2) << message;
    EXPECT_NE(e->text.find(message), std::string::npos) << message << ": " << e->text;
  }
}

TEST(SkiffMemoryOptions, ZoneFileIsParsed) {
  auto r = parse(
      {"--memory-zone", "id=a,size=64M,file=/tmp,shared=on", "--memory-zone", "id=b,size=64M"});
  auto* a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  ASSERT_EQ(a->vm.memory.zones.size(), 2u);
  EXPECT_EQ(a->vm.memory.zones[0].backing.file, "/tmp");
  EXPECT_TRUE(a->vm.memory.zones[0].backing.shared);
  EXPECT_EQ(a->vm.memory.zones[1].backing.file, "");
  EXPECT_FALSE(a->vm.memory.zones[1].backing.shared);
  // A directory with shared=off is fine too (a private temporary file).
  auto p = parse({"--memory-zone", "id=a,size=64M,file=/tmp"});
  ASSERT_NE(std::get_if<SkiffArgs>(&p), nullptr) << std::get<EarlyExit>(p).text;
}

TEST(SkiffMemoryOptions, HelpDescribesMemoryAndZones) {
  auto r = parse_skiff_args({"skiff", "--help"});
  auto* e = std::get_if<EarlyExit>(&r);
  ASSERT_NE(e, nullptr);
  for (const char* word :
       {"--memory-zone", "hugepages=on", "hugepage_size=2M|1G", "mergeable=on", "prefault=on",
        "host_numa_node=N", "thp=on|off", "shared=on", "file=PATH", "hugetlbfs"})
    EXPECT_NE(e->text.find(word), std::string::npos) << word;
}

}  // namespace
}  // namespace skiff::cli

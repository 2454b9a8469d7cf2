// The VmConfig JSON "memory" object (Cloud Hypervisor's MemoryConfig and
// MemoryZoneConfig) to VmConfig::memory_size / VmConfig::memory, and back.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/vm_config_json.h"

namespace skiff::api {
namespace {

constexpr uint64_t kMiB = 1 << 20, kGiB = 1ull << 30;

Result<VmConfig> with_memory(const std::string& memory) {
  return parse_vm_config_text(R"({"payload":{"kernel":"/k"},"memory":)" + memory + "}");
}

std::string memory_error(const std::string& memory) {
  auto r = with_memory(memory);
  return r ? std::string("(parsed)") : r.error().what();
}

TEST(MemoryConfigJson, ParsesTheBackingFields) {
  auto c = with_memory(
      R"({"size":2147483648,"hugepages":true,"hugepage_size":1073741824,"prefault":true,
          "thp":false,"hotplug_method":"Acpi","hotplug_size":0,"reserve":false})");
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_EQ(c->memory_size, 2 * kGiB);
  EXPECT_TRUE(c->memory.backing.hugepages);
  EXPECT_EQ(c->memory.backing.hugepage_size, kGiB);
  EXPECT_TRUE(c->memory.backing.prefault);
  EXPECT_EQ(c->memory.backing.thp, Thp::kOff);

  auto m = with_memory(R"({"size":1073741824,"mergeable":true,"thp":true})");
  ASSERT_TRUE(m) << m.error().what();
  EXPECT_TRUE(m->memory.backing.mergeable);
  EXPECT_EQ(m->memory.backing.thp, Thp::kOn);
  auto s = with_memory(R"({"size":1073741824,"shared":true})");
  ASSERT_TRUE(s) << s.error().what();
  EXPECT_TRUE(s->memory.backing.shared);
  EXPECT_EQ(s->memory.backing.thp, Thp::kDefault);
}

TEST(MemoryConfigJson, ZonesAreParsedInOrderAndSumToTheRamSize) {
  auto c = with_memory(R"({"size":0,"thp":true,"zones":[
      {"id":"z0","size":1073741824,"shared":true,"host_numa_node":0},
      {"id":"z1","size":2147483648,"hugepages":true,"prefault":true,"reserve":false},
      {"id":"z2","size":67108864,"mergeable":true,"hotplug_size":0}]})");
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_EQ(c->memory_size, 3 * kGiB + 64 * kMiB);
  const auto& z = c->memory.zones;
  ASSERT_EQ(z.size(), 3u);
  EXPECT_EQ(z[0].id, "z0");
  EXPECT_TRUE(z[0].backing.shared);
  EXPECT_EQ(z[0].backing.host_numa_node, 0u);
  EXPECT_TRUE(z[1].backing.hugepages);
  EXPECT_EQ(z[1].backing.hugepage_size, 2 * kMiB);
  EXPECT_TRUE(z[2].backing.mergeable);
  for (const auto& zone : z) EXPECT_EQ(zone.backing.thp, Thp::kOn);
}

TEST(MemoryConfigJson, RoundTripsThroughJson) {
  for (
      const char* text : {
          R"({"size":1073741824,"hugepages":true,"hugepage_size":2097152,"prefault":true,"thp":false})",
          R"({"size":536870912,"mergeable":true})",
          R"({"size":0,"zones":[{"id":"a","size":1073741824,"shared":true,"host_numa_node":0},
                                  {"id":"b","size":67108864,"hugepages":true,"hugepage_size":2097152}]})",
      }) {
    auto c = with_memory(text);
    ASSERT_TRUE(c) << c.error().what();
    nlohmann::json out = vm_config_to_json(*c);
    EXPECT_EQ(out["memory"], nlohmann::json::parse(text)) << out["memory"].dump();
    auto back = parse_vm_config(out);
    ASSERT_TRUE(back) << back.error().what();
    EXPECT_EQ(vm_config_to_json(*back)["memory"], out["memory"]);
  }
}

TEST(MemoryConfigJson, ZoneFileIsParsedCheckedAndRoundTrips) {
  // A directory: the zone gets a temporary file there when the VM starts.
  const char* text = R"({"size":0,"zones":[{"id":"a","size":1073741824,"file":"/tmp","shared":true},
                                          {"id":"b","size":67108864}]})";
  auto c = with_memory(text);
  ASSERT_TRUE(c) << c.error().what();
  ASSERT_EQ(c->memory.zones.size(), 2u);
  EXPECT_EQ(c->memory.zones[0].backing.file, "/tmp");
  EXPECT_TRUE(c->memory.zones[0].backing.shared);
  EXPECT_EQ(c->memory.zones[1].backing.file, "");
  nlohmann::json out = vm_config_to_json(*c);
  EXPECT_EQ(out["memory"], nlohmann::json::parse(text)) << out["memory"].dump();
  // Cloud Hypervisor's MemoryConfig has no file: only zones do.
  EXPECT_NE(memory_error(R"({"size":1073741824,"file":"/tmp"})").find("unknown field 'file'"),
            std::string::npos)
      << memory_error(R"({"size":1073741824,"file":"/tmp"})");
}

TEST(MemoryConfigJson, UnsupportedAndBadFieldsAreRefusedByName) {
  struct Case {
    const char* memory;
    const char* message;
  };
  for (auto [memory, message] : std::initializer_list<Case>{
           {R"({"size":1073741824,"hotplug_size":1073741824})",
            "memory.hotplug_size: memory hotplug is not supported yet"},
           {R"({"size":1073741824,"reserve":true})", "memory.reserve: reserving memory"},
           {R"({"size":1073741824,"host_numa_node":0})", "memory: unknown field 'host_numa_node'"},
           {R"({"size":1073741824,"hugepages":true,"hugepage_size":4194304})",
            "hugepage_size=4194304 is not 2M or 1G"},
           {R"({"size":1073741824,"hugepage_size":2097152})",
            "memory.hugepage_size: 2097152 needs hugepages true"},
           {R"({"size":1075838976,"hugepages":true,"hugepage_size":1073741824})",
            "size=1075838976 is not a multiple of the 1 GiB huge page size"},
           {R"({"size":1073741824,"shared":true,"mergeable":true})",
            "mergeable=on needs private memory"},
           {R"({"size":1073741824,"thp":"yes"})", "memory.thp: expected a boolean"},
           {R"({"size":1073741824,"zones":[{"id":"a","size":1073741824}]})",
            "memory.size: 1073741824 with memory.zones: must be 0"},
           {R"({"size":0,"shared":true,"zones":[{"id":"a","size":1073741824}]})",
            "memory.shared: with memory.zones, set it on each zone"},
           {R"({"size":0,"zones":[{"size":1073741824}]})", "memory.zones[0].id: required"},
           {R"({"size":1073741824,"zones":{}})", "memory.zones: expected an array, got object"},
           {R"({"size":0,"zones":[{"id":"a","size":1073741824},{"id":"a","size":1073741824}]})",
            "memory.zones[1].id: 'a' is used twice"},
           {R"({"size":0,"zones":[{"id":"a","size":1073741824,"file":"/no/such/dir/f"}]})",
            "memory.zones[0]: file=/no/such/dir/f: directory /no/such/dir does not exist"},
           {R"({"size":0,"zones":[{"id":"a","size":1073741824,"file":"/dev/null"}]})",
            "memory.zones[0]: file=/dev/null is a character device"},
           {R"({"size":0,"zones":[{"id":"a","size":1073741824,"file":""}]})",
            "memory.zones[0].file: empty"},
           {R"({"size":0,"zones":[{"id":"a","size":1073741824,"file":7}]})",
            "memory.zones[0].file"},
           {R"({"size":0,"zones":[{"id":"a","size":1073741824,"file":"/tmp","hugepages":true}]})",
            "file=/tmp with hugepages=on"},
           {R"({"size":0,"zones":[{"id":"a","size":4096}]})",
            "memory.zones: 4096 bytes in all, below the minimum"},
           {R"({"size":0,"zones":[{"id":"a","size":1073741824,"host_numa_node":5000}]})",
            "memory.zones[0].host_numa_node: 5000 is out of range"},
       }) {
    EXPECT_NE(memory_error(memory).find(message), std::string::npos)
        << memory << ": " << memory_error(memory);
  }
}

}  // namespace
}  // namespace skiff::api

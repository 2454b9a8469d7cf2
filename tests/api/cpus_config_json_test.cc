// CpusConfig (boot/max, topology, affinity) and NumaConfig in the VmConfig
// JSON, both ways, and vm.create refusing placements the host cannot give.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/vm_config_json.h"
#include "vmm/cpu_placement.h"

namespace skiff::api {
namespace {

Result<VmConfig> parse(const std::string& fields) {
  return parse_vm_config_text(R"({"payload":{"kernel":"/k"},)" + fields + "}");
}

std::string error_of(const std::string& fields) {
  auto r = parse(fields);
  return r ? std::string("(parsed)") : r.error().what();
}

TEST(CpusConfigJson, ParsesMaxTopologyAndAffinity) {
  auto c = parse(R"("cpus":{"boot_vcpus":2,"max_vcpus":4,
      "topology":{"threads_per_core":2,"cores_per_die":1,"dies_per_package":1,"packages":2},
      "affinity":[{"vcpu":0,"host_cpus":[0]},{"vcpu":3,"host_cpus":[0,1]}]})");
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_EQ(c->boot_cpus, 2u);
  EXPECT_EQ(c->max_cpus, 4u);
  EXPECT_EQ(*c->topology, (CpuTopologyConfig{2, 1, 1, 2}));
  std::vector<VcpuAffinity> want{{0, {0}}, {3, {0, 1}}};
  EXPECT_EQ(c->affinity, want);
}

TEST(CpusConfigJson, MissingTopologyCountsAreOne) {
  auto c = parse(R"("cpus":{"boot_vcpus":4,"topology":{"packages":4}})");
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_EQ(*c->topology, (CpuTopologyConfig{1, 1, 1, 4}));
}

TEST(CpusConfigJson, ParsesNumaNodes) {
  auto c = parse(R"("cpus":{"boot_vcpus":2},"numa":[
      {"guest_numa_id":0,"cpus":[0],"distances":[{"destination":1,"distance":30}],
       "memory_zones":["z0"]},
      {"guest_numa_id":1,"cpus":[1]}])");
  ASSERT_TRUE(c) << c.error().what();
  ASSERT_EQ(c->numa.size(), 2u);
  EXPECT_EQ(c->numa[0].memory_zones, std::vector<std::string>{"z0"});
  EXPECT_EQ(c->numa[0].distances, (std::vector<NumaDistance>{{1, 30}}));
  EXPECT_EQ(c->numa[1].cpus, std::vector<uint32_t>{1});
}

TEST(CpusConfigJson, BadValuesNameTheField) {
  struct Case {
    const char* fields;
    const char* named;
  } cases[] = {
      {R"("cpus":{"boot_vcpus":4,"max_vcpus":2})", "cpus.max_vcpus: 2"},
      {R"("cpus":{"boot_vcpus":1,"topology":{"cores":2}})", "unknown field 'cores'"},
      {R"("cpus":{"boot_vcpus":1,"topology":{"packages":0}})", "cpus.topology.packages"},
      {R"("cpus":{"boot_vcpus":1,"affinity":{}})", "cpus.affinity: expected an array"},
      {R"("cpus":{"boot_vcpus":1,"affinity":[{"vcpu":0}]})", "cpus.affinity[0]"},
      {R"("cpus":{"boot_vcpus":1,"affinity":[{"vcpu":0,"host_cpus":[-1]}]})",
       "cpus.affinity[0].host_cpus[0]: -1"},
      {R"("numa":[{"cpus":[0]}])", "numa[0].guest_numa_id: required"},
      {R"("numa":[{"guest_numa_id":0,"distances":[{"destination":1}]}])", "numa[0].distances[0]"},
      {R"("numa":[{"guest_numa_id":0,"distances":[{"destination":1,"distance":5}]}])",
       "distance: 5"},
      {R"("numa":[{"guest_numa_id":0,"memory_zones":[3]}])", "numa[0].memory_zones[0]"},
      {R"("numa":[{"guest_numa_id":0,"pci_segments":[1]}])", "not supported yet"},
  };
  for (const auto& c : cases) {
    std::string e = error_of(c.fields);
    EXPECT_NE(e.find(c.named), std::string::npos) << c.fields << " -> " << e;
  }
}

TEST(CpusConfigJson, RoundTripsThroughVmInfoJson) {
  auto c = parse(R"("cpus":{"boot_vcpus":2,"max_vcpus":4,
      "topology":{"threads_per_core":1,"cores_per_die":2,"dies_per_package":1,"packages":2},
      "affinity":[{"vcpu":1,"host_cpus":[0]}]},
      "numa":[{"guest_numa_id":0,"cpus":[0,1],"distances":[{"destination":1,"distance":25}]},
              {"guest_numa_id":1,"cpus":[2,3]}])");
  ASSERT_TRUE(c) << c.error().what();
  nlohmann::json j = vm_config_to_json(*c);
  EXPECT_EQ(j["cpus"]["boot_vcpus"], 2);
  EXPECT_EQ(j["cpus"]["max_vcpus"], 4);
  EXPECT_EQ(j["cpus"]["topology"]["cores_per_die"], 2);
  EXPECT_EQ(j["cpus"]["affinity"][0]["host_cpus"], nlohmann::json::array({0}));
  EXPECT_EQ(j["numa"][1]["cpus"], nlohmann::json::array({2, 3}));
  auto back = parse_vm_config(j);
  ASSERT_TRUE(back) << back.error().what() << "\n" << j.dump();
  EXPECT_EQ(back->max_cpus, 4u);
  EXPECT_EQ(back->topology, c->topology);
  EXPECT_EQ(back->affinity, c->affinity);
  EXPECT_EQ(back->numa, c->numa);
}

TEST(CpusConfigJson, PlacementIsValidatedAgainstTheHostBeforeBoot) {
  // The API's vm.create runs validate_cpu_placement; a host CPU skiff cannot
  // use and a topology that does not multiply to max are refused by name.
  auto c = parse(R"("cpus":{"boot_vcpus":1,"affinity":[{"vcpu":0,"host_cpus":[8000]}]})");
  ASSERT_TRUE(c);
  auto r = validate_cpu_placement(*c);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what().find("host CPU 8000"), std::string::npos) << r.error().what();
  auto t = parse(R"("cpus":{"boot_vcpus":4,"topology":{"packages":2}})");
  ASSERT_TRUE(t);
  auto rt = validate_cpu_placement(*t);
  ASSERT_FALSE(rt);
  EXPECT_NE(rt.error().what().find("max is 4"), std::string::npos) << rt.error().what();
}

}  // namespace
}  // namespace skiff::api

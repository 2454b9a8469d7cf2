// --cpus max/topology/affinity and --numa: Cloud Hypervisor's syntax, with
// bracketed lists that contain commas, and errors that name the bad value.
#include "cli/cpu_options.h"

#include <gtest/gtest.h>

#include "cli/skiff_options.h"

namespace skiff::cli {
namespace {

std::variant<SkiffArgs, EarlyExit> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "skiff");
  args.insert(args.begin() + 1, {"--kernel", "/k"});
  return parse_skiff_args(args);
}

VmConfig cpus(std::string_view value) {
  VmConfig vm;
  auto r = parse_cpus(value, vm);
  EXPECT_TRUE(r) << value << ": " << (r ? "" : r.error().what());
  return vm;
}

std::string cpus_error(std::string_view value) {
  VmConfig vm;
  auto r = parse_cpus(value, vm);
  EXPECT_FALSE(r) << value << " was accepted";
  return r ? "" : r.error().what();
}

TEST(CpuOptions, BootAloneMeansMaxEqualsBootAndNoTopology) {
  VmConfig vm = cpus("boot=3");
  EXPECT_EQ(vm.boot_cpus, 3u);
  EXPECT_EQ(vm.max_cpus, 3u);
  EXPECT_FALSE(vm.topology);
  EXPECT_TRUE(vm.affinity.empty());
}

TEST(CpuOptions, ParsesMaxTopologyAndBracketedAffinityTogether) {
  VmConfig vm = cpus("boot=2,max=12,topology=2:3:1:2,affinity=[0@[2,3],1@[4],11@[0-1,5]]");
  EXPECT_EQ(vm.boot_cpus, 2u);
  EXPECT_EQ(vm.max_cpus, 12u);
  ASSERT_TRUE(vm.topology);
  EXPECT_EQ(*vm.topology, (CpuTopologyConfig{2, 3, 1, 2}));
  std::vector<VcpuAffinity> want{{0, {2, 3}}, {1, {4}}, {11, {0, 1, 5}}};
  EXPECT_EQ(vm.affinity, want);
}

TEST(CpuOptions, AffinityKeyOrderDoesNotMatter) {
  VmConfig vm = cpus("affinity=[1@[0]],boot=2");
  ASSERT_EQ(vm.affinity.size(), 1u);
  EXPECT_EQ(vm.affinity[0].vcpu, 1u);
  EXPECT_EQ(vm.affinity[0].host_cpus, std::vector<uint32_t>{0});
}

TEST(CpuOptions, AffinityWithoutOuterBracketsForOneVcpu) {
  VmConfig vm = cpus("boot=1,affinity=0@[1-3]");
  ASSERT_EQ(vm.affinity.size(), 1u);
  EXPECT_EQ(vm.affinity[0].host_cpus, (std::vector<uint32_t>{1, 2, 3}));
}

TEST(CpuOptions, RejectsBadValuesNamingThem) {
  struct Case {
    const char* value;
    const char* named;
  } cases[] = {
      {"boot=4,max=2", "max=2"},
      {"boot=2,max=256", "256"},
      {"boot=4,topology=1:2:1:1", "topology=1:2:1:1"},  // 2 vCPUs, max is 4
      {"boot=4,topology=1:4:1", "1:4:1"},
      {"boot=4,topology=1:4:1:1:1", "1:4:1:1:1"},
      {"boot=4,topology=1:x:1:4", "'x'"},
      {"boot=4,topology=0:4:1:1", "0"},
      {"boot=2,affinity=[0@[1],2@[0]]", "vCPU 2"},
      {"boot=2,affinity=[0@[1],0@[2]]", "vCPU 0"},
      {"boot=2,affinity=[0@[3-1]]", "3-1"},
      {"boot=2,affinity=[0@[1,1]]", "1 is listed twice"},
      {"boot=2,affinity=[0@[]]", "no host CPUs"},
      {"boot=2,affinity=[0:[1]]", "0:[1]"},
      {"boot=2,affinity=[0@[1]", "unbalanced"},
      {"boot=2,affinity=[x@[1]]", "'x'"},
      {"boot=2,affinity=[0@[9000]]", "9000"},
      {"boot=2,cores=2", "cores"},
  };
  for (const auto& c : cases) {
    std::string e = cpus_error(c.value);
    EXPECT_NE(e.find(c.named), std::string::npos) << c.value << " -> " << e;
  }
}

TEST(CpuOptions, NumberListsTakeRangesAndOptionalBrackets) {
  auto a = parse_number_list("t", "[0-2,5]", 10);
  ASSERT_TRUE(a);
  EXPECT_EQ(*a, (std::vector<uint32_t>{0, 1, 2, 5}));
  auto b = parse_number_list("t", "7", 10);
  ASSERT_TRUE(b);
  EXPECT_EQ(*b, std::vector<uint32_t>{7});
  EXPECT_FALSE(parse_number_list("t", "[11]", 10));
  EXPECT_FALSE(parse_number_list("t", "[1-]", 10));
  EXPECT_FALSE(parse_number_list("t", "[-1]", 10));
  EXPECT_FALSE(parse_number_list("t", "[1,,2]", 10));
}

TEST(NumaOptions, ParsesEveryKeyWithBracketedLists) {
  auto n = parse_numa("guest_numa_id=1,cpus=[0-1,4],memory_zones=[z0,z1],distances=[0@20,2@35]");
  ASSERT_TRUE(n) << n.error().what();
  EXPECT_EQ(n->guest_numa_id, 1u);
  EXPECT_EQ(n->cpus, (std::vector<uint32_t>{0, 1, 4}));
  EXPECT_EQ(n->memory_zones, (std::vector<std::string>{"z0", "z1"}));
  EXPECT_EQ(n->distances, (std::vector<NumaDistance>{{0, 20}, {2, 35}}));
}

TEST(NumaOptions, SingleZoneWithoutBrackets) {
  auto n = parse_numa("guest_numa_id=0,memory_zones=mem0");
  ASSERT_TRUE(n) << n.error().what();
  EXPECT_EQ(n->memory_zones, std::vector<std::string>{"mem0"});
  EXPECT_TRUE(n->cpus.empty());
}

TEST(NumaOptions, RejectsBadValuesNamingThem) {
  struct Case {
    const char* value;
    const char* named;
  } cases[] = {
      {"cpus=[0]", "guest_numa_id=N is required"},
      {"guest_numa_id=x", "'x'"},
      {"guest_numa_id=0,distances=[1@9]", "9"},
      {"guest_numa_id=0,distances=[1@256]", "256"},
      {"guest_numa_id=0,distances=[1-20]", "1-20"},
      {"guest_numa_id=0,memory_zones=[a,,b]", "empty zone"},
      {"guest_numa_id=0,cpus=[0,0]", "listed twice"},
      {"guest_numa_id=0,cpus=[0-300]", "300"},
      {"guest_numa_id=0,node=1", "node"},
  };
  for (const auto& c : cases) {
    auto n = parse_numa(c.value);
    ASSERT_FALSE(n) << c.value << " was accepted";
    EXPECT_NE(n.error().what().find(c.named), std::string::npos)
        << c.value << " -> " << n.error().what();
  }
}

TEST(CpuNumaCommandLine, RepeatedNumaOptionsAndCpusReachTheConfig) {
  auto r = parse({"--cpus", "boot=4,topology=1:2:1:2,affinity=[0@[0],3@[1]]", "--numa",
                  "guest_numa_id=0,cpus=[0-1],distances=[1@25]", "--numa",
                  "guest_numa_id=1,cpus=[2,3],distances=[0@25]"});
  auto* a = std::get_if<SkiffArgs>(&r);
  ASSERT_NE(a, nullptr) << std::get<EarlyExit>(r).text;
  EXPECT_EQ(a->vm.effective_max_cpus(), 4u);
  EXPECT_EQ(*a->vm.topology, (CpuTopologyConfig{1, 2, 1, 2}));
  ASSERT_EQ(a->vm.numa.size(), 2u);
  EXPECT_EQ(a->vm.numa[1].cpus, (std::vector<uint32_t>{2, 3}));
  EXPECT_EQ(a->vm.numa[0].distances, (std::vector<NumaDistance>{{1, 25}}));
}

TEST(CpuNumaCommandLine, BadNumaExitsWithStatus2) {
  auto r = parse({"--numa", "guest_numa_id=0,cpus=[1-0]"});
  auto* e = std::get_if<EarlyExit>(&r);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->status, 2);
  EXPECT_NE(e->text.find("1-0"), std::string::npos) << e->text;
}

TEST(CpuNumaCommandLine, HelpDescribesTheNewKeys) {
  auto r = parse({"--help"});
  auto* e = std::get_if<EarlyExit>(&r);
  ASSERT_NE(e, nullptr);
  for (const char* s : {"max=M", "topology=T:C:D:P", "affinity=", "--numa", "guest_numa_id",
                        "memory_zones", "distances", "not implemented yet"})
    EXPECT_NE(e->text.find(s), std::string::npos) << s;
}

}  // namespace
}  // namespace skiff::cli

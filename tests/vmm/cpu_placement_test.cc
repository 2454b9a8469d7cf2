// vCPU placement without KVM: validation of --cpus/--numa against a given
// host CPU set, the SRAT/SLIT node list, and pinning a plain std::thread
// (the function the vCPU threads use), read back through the kernel.
#include "vmm/cpu_placement.h"

#include "arch/x86/layout.h"
#include "vmm/memory_layout.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <future>
#include <sstream>
#include <thread>

namespace skiff {
namespace {

VmConfig with_cpus(uint32_t boot, uint32_t max = 0) {
  VmConfig c;
  c.boot_cpus = boot;
  c.max_cpus = max;
  return c;
}

std::string error_of(const VmConfig& c, const std::vector<uint32_t>& host = {0, 1, 2, 3}) {
  auto r = validate_cpu_placement(c, host);
  EXPECT_FALSE(r) << "accepted";
  return r ? "" : r.error().what();
}

#define EXPECT_MENTIONS(text, part) \
  EXPECT_NE((text).find(part), std::string::npos) << "'" << (text) << "' lacks '" << (part) << "'"

TEST(CpuPlacement, AcceptsADefaultConfig) {
  EXPECT_TRUE(validate_cpu_placement(with_cpus(1), {0}));
  EXPECT_TRUE(validate_cpu_placement(with_cpus(4, 8), {0}));
}

TEST(CpuPlacement, MaxBelowBootIsRejected) {
  EXPECT_MENTIONS(error_of(with_cpus(4, 2)), "max=2");
}

TEST(CpuPlacement, TopologyMustMultiplyToMax) {
  VmConfig c = with_cpus(2, 6);
  c.topology = CpuTopologyConfig{1, 3, 1, 2};
  EXPECT_TRUE(validate_cpu_placement(c, {0}));
  c.topology = CpuTopologyConfig{1, 4, 1, 2};
  EXPECT_MENTIONS(error_of(c), "topology=1:4:1:2 describes 8 vCPUs, but max is 6");
  c.topology = CpuTopologyConfig{0, 6, 1, 1};
  EXPECT_MENTIONS(error_of(c), "at least 1");
}

TEST(CpuPlacement, TopologyWhoseApicIdsOverflowEightBitsIsRejected) {
  // 3 cores need 2 bits, 85 packages 7: 9 bits of APIC ID.
  VmConfig c = with_cpus(1, 255);
  c.topology = CpuTopologyConfig{1, 3, 1, 85};
  EXPECT_MENTIONS(error_of(c), "8 bits");
}

TEST(CpuPlacement, AffinityHostCpusMustBeUsable) {
  VmConfig c = with_cpus(2);
  c.affinity = {{0, {1}}, {1, {2, 3}}};
  EXPECT_TRUE(validate_cpu_placement(c, {0, 1, 2, 3}));
  c.affinity = {{0, {1}}, {1, {2, 7}}};
  std::string e = error_of(c);
  EXPECT_MENTIONS(e, "host CPU 7");
  EXPECT_MENTIONS(e, "vCPU 1");
  EXPECT_MENTIONS(e, "0,1,2,3");
}

TEST(CpuPlacement, AffinityVcpuMustExistAndAppearOnce) {
  VmConfig c = with_cpus(2, 3);
  c.affinity = {{2, {0}}};  // a hotpluggable vCPU may be pinned in advance
  EXPECT_TRUE(validate_cpu_placement(c, {0}));
  c.affinity = {{3, {0}}};
  EXPECT_MENTIONS(error_of(c), "vCPU 3");
  c.affinity = {{1, {0}}, {1, {1}}};
  EXPECT_MENTIONS(error_of(c), "vCPU 1 twice");
  c.affinity = {{1, {}}};
  EXPECT_MENTIONS(error_of(c), "no host CPUs");
}

VmConfig two_nodes() {
  VmConfig c = with_cpus(4);
  c.numa = {{0, {0, 1}, {}, {}}, {1, {2, 3}, {}, {}}};
  return c;
}

TEST(CpuPlacement, NumaNodesAreChecked) {
  VmConfig c = two_nodes();
  EXPECT_TRUE(validate_cpu_placement(c, {0}));

  VmConfig dup = two_nodes();
  dup.numa[1].guest_numa_id = 0;
  EXPECT_MENTIONS(error_of(dup), "guest_numa_id=0 is given twice");

  VmConfig sparse = two_nodes();
  sparse.numa[1].guest_numa_id = 5;
  EXPECT_MENTIONS(error_of(sparse), "guest_numa_id=5");

  VmConfig far_cpu = two_nodes();
  far_cpu.numa[1].cpus = {2, 4};
  EXPECT_MENTIONS(error_of(far_cpu), "vCPU 4 does not exist");

  VmConfig shared_cpu = two_nodes();
  shared_cpu.numa[1].cpus = {1, 2};
  EXPECT_MENTIONS(error_of(shared_cpu), "vCPU 1 is in guest_numa_id=0 and guest_numa_id=1");

  VmConfig bad_dest = two_nodes();
  bad_dest.numa[0].distances = {{2, 20}};
  EXPECT_MENTIONS(error_of(bad_dest), "node 2, which is not defined");

  VmConfig self = two_nodes();
  self.numa[0].distances = {{0, 11}};
  EXPECT_MENTIONS(error_of(self), "distance to itself is 11");

  VmConfig local_remote = two_nodes();
  local_remote.numa[0].distances = {{1, 10}};
  EXPECT_MENTIONS(error_of(local_remote), "distance 10 to node 1");

  VmConfig no_zone = two_nodes();
  no_zone.numa[1].memory_zones = {"nope"};
  EXPECT_MENTIONS(error_of(no_zone), "memory zone 'nope' is not defined");

  VmConfig twice = two_nodes();
  twice.numa[0].memory_zones = {"a", "a"};
  EXPECT_MENTIONS(error_of(twice), "'a' listed twice");
}

TEST(CpuPlacement, TopologyDefaultsToOneSocketOfMaxCores) {
  auto t = vcpu_topology(with_cpus(2, 5));
  EXPECT_EQ(t.threads_per_core, 1u);
  EXPECT_EQ(t.cores_per_die, 5u);
  EXPECT_EQ(t.sockets, 1u);
  VmConfig c = with_cpus(4);
  c.topology = CpuTopologyConfig{2, 1, 1, 2};
  t = vcpu_topology(c);
  EXPECT_EQ(t.threads_per_core, 2u);
  EXPECT_EQ(t.sockets, 2u);
}

TEST(CpuPlacement, VcpuHostCpusComeFromTheAffinityList) {
  VmConfig c = with_cpus(3);
  c.affinity = {{2, {1, 3}}};
  EXPECT_TRUE(vcpu_host_cpus(c, 0).empty());
  EXPECT_EQ(vcpu_host_cpus(c, 2), (std::vector<uint32_t>{1, 3}));
}

TEST(AcpiNumaNodes, DefaultDistancesAndAllRamOnNodeZeroWithoutZones) {
  VmConfig c = two_nodes();
  auto nodes =
      acpi_numa_nodes(c, std::vector<RamZone>{{"", {{0, 0x1000}, {0x100000000, 0x2000}}, {}}});
  ASSERT_TRUE(nodes) << nodes.error().what();
  ASSERT_EQ(nodes->size(), 2u);
  EXPECT_EQ((*nodes)[0].distances, (std::vector<uint8_t>{10, 20}));
  EXPECT_EQ((*nodes)[1].distances, (std::vector<uint8_t>{20, 10}));
  EXPECT_EQ((*nodes)[0].cpus, (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ((*nodes)[1].cpus, (std::vector<uint32_t>{2, 3}));
  ASSERT_EQ((*nodes)[0].memory.size(), 2u);
  EXPECT_EQ((*nodes)[0].memory[1].gpa, 0x100000000u);
  EXPECT_TRUE((*nodes)[1].memory.empty());
}

TEST(AcpiNumaNodes, NodesAreOrderedByIdWithTheirZonesAndDistances) {
  VmConfig c = with_cpus(2);
  c.numa = {{1, {1}, {"hi"}, {{0, 31}}}, {0, {0}, {"lo"}, {{1, 32}}}};
  auto nodes = acpi_numa_nodes(
      c, std::vector<RamZone>{{"lo", {{0, 0x8000}}, {}}, {"hi", {{0x8000, 0x4000}}, {}}});
  ASSERT_TRUE(nodes) << nodes.error().what();
  EXPECT_EQ((*nodes)[0].cpus, std::vector<uint32_t>{0});
  EXPECT_EQ((*nodes)[0].distances, (std::vector<uint8_t>{10, 32}));
  EXPECT_EQ((*nodes)[1].distances, (std::vector<uint8_t>{31, 10}));
  ASSERT_EQ((*nodes)[1].memory.size(), 1u);
  EXPECT_EQ((*nodes)[1].memory[0].gpa, 0x8000u);
  EXPECT_EQ((*nodes)[1].memory[0].size, 0x4000u);
}

TEST(AcpiNumaNodes, ZonesMustExistBelongToOneNodeAndAllBeCovered) {
  VmConfig c = with_cpus(2);
  c.numa = {{0, {0}, {"a"}, {}}, {1, {1}, {"b"}, {}}};
  std::vector<RamZone> zones{{"a", {{0, 0x1000}}, {}}, {"b", {{0x1000, 0x1000}}, {}}};
  EXPECT_TRUE(acpi_numa_nodes(c, zones));

  auto missing = acpi_numa_nodes(c, std::vector<RamZone>{{"a", {{0, 0x1000}}, {}}});
  ASSERT_FALSE(missing);
  EXPECT_MENTIONS(missing.error().what(), "memory zone 'b' is not defined");

  VmConfig twice = c;
  twice.numa[1].memory_zones = {"a"};
  auto t = acpi_numa_nodes(twice, zones);
  ASSERT_FALSE(t);
  EXPECT_MENTIONS(t.error().what(), "'a' is in guest_numa_id=0 and guest_numa_id=1");

  VmConfig uncovered = c;
  uncovered.numa[1].memory_zones = {};
  auto u = acpi_numa_nodes(uncovered, zones);
  ASSERT_FALSE(u);
  EXPECT_MENTIONS(u.error().what(), "'b' belongs to no guest_numa_id");
}

TEST(AcpiNumaNodes, ZonesSplitByThePciHoleKeepBothRangesOnTheirNode) {
  // Two 2 GiB zones: the second starts below the 32-bit PCI hole and
  // continues at 4 GiB, so node 1 gets two SRAT memory ranges.
  VmConfig c = with_cpus(2);
  c.memory.zones = {{"lo", 2ull << 30, {}}, {"hi", 2ull << 30, {}}};
  c.memory_size = 4ull << 30;
  c.numa = {{0, {0}, {"lo"}, {}}, {1, {1}, {"hi"}, {}}};
  auto layout = memory_zone_layout(c);
  auto nodes = acpi_numa_nodes(c, layout);
  ASSERT_TRUE(nodes) << nodes.error().what();
  ASSERT_EQ((*nodes)[0].memory.size(), 1u);
  EXPECT_EQ((*nodes)[0].memory[0].gpa, 0u);
  EXPECT_EQ((*nodes)[0].memory[0].size, 2ull << 30);
  ASSERT_EQ((*nodes)[1].memory.size(), 2u);
  EXPECT_EQ((*nodes)[1].memory[0].gpa, 2ull << 30);
  EXPECT_EQ((*nodes)[1].memory[1].gpa, x86::kRam64Start);
  uint64_t total = 0;
  for (const auto& n : *nodes)
    for (const auto& r : n.memory) total += r.size;
  EXPECT_EQ(total, 4ull << 30) << "every byte of RAM on exactly one node";
}

// Cpus_allowed_list of a thread as the kernel reports it (what the KVM
// test reads for the vcpuN threads of a running skiff).
std::string cpus_allowed_list(pid_t tid) {
  std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.starts_with("Cpus_allowed_list:")) {
      std::string v = line.substr(line.find(':') + 1);
      return v.substr(v.find_first_not_of(" \t"));
    }
  return "";
}

TEST(PinThread, AppliesTheSetToAPlainThreadAsTheKernelSeesIt) {
  auto host = host_usable_cpus();
  ASSERT_TRUE(host) << host.error().what();
  ASSERT_FALSE(host->empty());
  uint32_t target = host->back();

  std::promise<void> pinned, checked;
  std::promise<pid_t> tid;
  std::promise<int> ran_on;
  std::thread t([&] {
    tid.set_value(static_cast<pid_t>(syscall(SYS_gettid)));
    pinned.get_future().wait();
    sched_yield();  // the kernel migrates the thread off any other CPU
    ran_on.set_value(sched_getcpu());
    checked.get_future().wait();
  });
  pid_t id = tid.get_future().get();
  ASSERT_TRUE(pin_thread(t.native_handle(), {target}));
  pinned.set_value();
  EXPECT_EQ(ran_on.get_future().get(), static_cast<int>(target));
  auto cpus = thread_cpus(t.native_handle());
  ASSERT_TRUE(cpus);
  EXPECT_EQ(*cpus, std::vector<uint32_t>{target});
  EXPECT_EQ(cpus_allowed_list(id), std::to_string(target));
  // Widening again works too (the set is replaced, not intersected).
  ASSERT_TRUE(pin_thread(t.native_handle(), *host));
  EXPECT_EQ(*thread_cpus(t.native_handle()), *host);
  checked.set_value();
  t.join();
}

TEST(PinThread, RejectsEmptyAndImpossibleSets) {
  std::thread t([] {});
  auto handle = t.native_handle();
  EXPECT_FALSE(pin_thread(handle, {}));
  EXPECT_FALSE(pin_thread(handle, {100000}));
  t.join();
}

TEST(HostCpus, UsableCpusAreOnline) {
  auto host = host_usable_cpus();
  ASSERT_TRUE(host) << host.error().what();
  std::ifstream f("/sys/devices/system/cpu/online");
  std::string online;
  std::getline(f, online);
  // Parse "0-3,6" into a set and check containment.
  std::vector<uint32_t> on;
  std::stringstream ss(online);
  std::string part;
  while (std::getline(ss, part, ',')) {
    auto dash = part.find('-');
    uint32_t lo = std::stoul(part.substr(0, dash));
    uint32_t hi = dash == std::string::npos ? lo : std::stoul(part.substr(dash + 1));
    for (uint32_t i = lo; i <= hi; ++i) on.push_back(i);
  }
  for (uint32_t cpu : *host)
    EXPECT_NE(std::find(on.begin(), on.end(), cpu), on.end()) << cpu << " not in " << online;
  // And validation uses them: the first usable CPU is accepted, one past
  // the last online one is not.
  VmConfig c = with_cpus(1);
  c.affinity = {{0, {host->front()}}};
  EXPECT_TRUE(validate_cpu_placement(c));
  c.affinity = {{0, {on.back() + 1}}};
  auto r = validate_cpu_placement(c);
  ASSERT_FALSE(r);
  EXPECT_MENTIONS(r.error().what(), std::to_string(on.back() + 1));
}

}  // namespace
}  // namespace skiff

#include "vmm/cpu_placement.h"

#include <sched.h>

#include <algorithm>
#include <map>
#include <set>

#include <fmt/ranges.h>

#include "vmm/memory_layout.h"

namespace skiff {

namespace {

// CPU sets as big as the kernel's NR_CPUS can be (8192); CPU_ALLOC sizes
// them, so hosts with more than CPU_SETSIZE (1024) CPUs work too.
constexpr int kMaxHostCpus = 8192;

class CpuSet {
 public:
  CpuSet() : set_(CPU_ALLOC(kMaxHostCpus)), size_(CPU_ALLOC_SIZE(kMaxHostCpus)) {
    CPU_ZERO_S(size_, set_);
  }
  ~CpuSet() { CPU_FREE(set_); }
  CpuSet(const CpuSet&) = delete;
  CpuSet& operator=(const CpuSet&) = delete;

  cpu_set_t* get() { return set_; }
  [[nodiscard]] size_t size() const { return size_; }
  void add(uint32_t cpu) { CPU_SET_S(cpu, size_, set_); }
  [[nodiscard]] std::vector<uint32_t> list() const {
    std::vector<uint32_t> out;
    for (uint32_t i = 0; i < kMaxHostCpus; ++i)
      if (CPU_ISSET_S(i, size_, set_)) out.push_back(i);
    return out;
  }

 private:
  cpu_set_t* set_;
  size_t size_;
};

Result<> validate_topology(const VmConfig& c, uint32_t max) {
  if (!c.topology) return {};
  const CpuTopologyConfig& t = *c.topology;
  auto text = fmt::format("{}:{}:{}:{}", t.threads_per_core, t.cores_per_die, t.dies_per_package,
                          t.packages);
  if (t.threads_per_core == 0 || t.cores_per_die == 0 || t.dies_per_package == 0 || t.packages == 0)
    return fail("--cpus: topology={}: every count must be at least 1", text);
  if (t.vcpus() != max)
    return fail(
        "--cpus: topology={} describes {} vCPUs, but max is {} (threads x cores x dies x "
        "packages must equal max)",
        text, t.vcpus(), max);
  if (auto r = x86::validate_topology(vcpu_topology(c), max); !r)
    return fail("--cpus: topology={}: {}", text, r.error().message);
  return {};
}

Result<> validate_affinity(const VmConfig& c, uint32_t max, const std::vector<uint32_t>& host) {
  std::set<uint32_t> usable(host.begin(), host.end());
  std::set<uint32_t> vcpus;
  for (const VcpuAffinity& a : c.affinity) {
    if (a.vcpu >= max)
      return fail("--cpus: affinity for vCPU {}, but the VM has {} vCPUs (0-{})", a.vcpu, max,
                  max - 1);
    if (!vcpus.insert(a.vcpu).second) return fail("--cpus: affinity lists vCPU {} twice", a.vcpu);
    if (a.host_cpus.empty()) return fail("--cpus: affinity for vCPU {} has no host CPUs", a.vcpu);
    for (uint32_t cpu : a.host_cpus)
      if (!usable.contains(cpu))
        return fail(
            "--cpus: affinity for vCPU {}: host CPU {} is not one skiff may run on (online and "
            "allowed: {})",
            a.vcpu, cpu, fmt::join(host, ","));
  }
  return {};
}

Result<> validate_numa(const VmConfig& c, uint32_t max) {
  size_t n = c.numa.size();
  std::map<uint32_t, const NumaNodeConfig*> by_id;
  for (const NumaNodeConfig& node : c.numa) {
    if (!by_id.emplace(node.guest_numa_id, &node).second)
      return fail("--numa: guest_numa_id={} is given twice", node.guest_numa_id);
  }
  // The SLIT is indexed by proximity domain, so ids are 0..N-1.
  for (const NumaNodeConfig& node : c.numa)
    if (node.guest_numa_id >= n)
      return fail("--numa: guest_numa_id={}: with {} node(s) the ids must be 0 to {}",
                  node.guest_numa_id, n, n - 1);
  std::map<uint32_t, uint32_t> owner;
  for (const NumaNodeConfig& node : c.numa) {
    for (uint32_t cpu : node.cpus) {
      if (cpu >= max)
        return fail("--numa: guest_numa_id={}: vCPU {} does not exist (the VM has {}, 0-{})",
                    node.guest_numa_id, cpu, max, max - 1);
      auto [it, fresh] = owner.emplace(cpu, node.guest_numa_id);
      if (!fresh)
        return fail("--numa: vCPU {} is in guest_numa_id={} and guest_numa_id={}", cpu, it->second,
                    node.guest_numa_id);
    }
    std::set<uint32_t> dests;
    for (const NumaDistance& d : node.distances) {
      if (!by_id.contains(d.destination))
        return fail("--numa: guest_numa_id={}: distance to node {}, which is not defined",
                    node.guest_numa_id, d.destination);
      if (!dests.insert(d.destination).second)
        return fail("--numa: guest_numa_id={}: distance to node {} given twice", node.guest_numa_id,
                    d.destination);
      if (d.destination == node.guest_numa_id) {
        if (d.distance != kNumaLocalDistance)
          return fail("--numa: guest_numa_id={}: distance to itself is {}; it must be {}",
                      node.guest_numa_id, d.distance, kNumaLocalDistance);
      } else if (d.distance <= kNumaLocalDistance || d.distance > 255) {
        return fail("--numa: guest_numa_id={}: distance {} to node {} is out of range [{}, 255]",
                    node.guest_numa_id, d.distance, d.destination, kNumaLocalDistance + 1);
      }
    }
    std::set<std::string> zones;
    for (const std::string& z : node.memory_zones) {
      if (z.empty())
        return fail("--numa: guest_numa_id={}: empty memory zone id", node.guest_numa_id);
      if (!zones.insert(z).second)
        return fail("--numa: guest_numa_id={}: memory zone '{}' listed twice", node.guest_numa_id,
                    z);
    }
  }
  return {};
}

}  // namespace

Result<std::vector<uint32_t>> host_usable_cpus() {
  CpuSet set;
  if (sched_getaffinity(0, set.size(), set.get()) != 0)
    return fail_errno("sched_getaffinity of the skiff process");
  return set.list();
}

Result<> validate_cpu_placement(const VmConfig& c, const std::vector<uint32_t>& host_cpus) {
  if (c.boot_cpus == 0 || c.boot_cpus > kMaxVcpus)
    return fail("--cpus: boot={} is out of range [1, {}]", c.boot_cpus, kMaxVcpus);
  uint32_t max = c.effective_max_cpus();
  if (max < c.boot_cpus || max > kMaxVcpus)
    return fail("--cpus: max={} is out of range [boot={}, {}]", max, c.boot_cpus, kMaxVcpus);
  SKIFF_TRY_VOID(validate_topology(c, max));
  SKIFF_TRY_VOID(validate_affinity(c, max, host_cpus));
  SKIFF_TRY_VOID(validate_numa(c, max));
  // Zones named by the nodes exist, each on one node, none left out.
  if (!c.numa.empty()) SKIFF_TRY_VOID(acpi_numa_nodes(c, memory_zone_layout(c)));
  return {};
}

Result<> validate_cpu_placement(const VmConfig& c) {
  std::vector<uint32_t> host;
  if (!c.affinity.empty()) host = SKIFF_TRY(host_usable_cpus());
  return validate_cpu_placement(c, host);
}

x86::CpuTopology vcpu_topology(const VmConfig& c) {
  if (!c.topology) return x86::CpuTopology::flat(c.effective_max_cpus());
  const CpuTopologyConfig& t = *c.topology;
  return {t.threads_per_core, t.cores_per_die, t.dies_per_package, t.packages};
}

std::vector<uint32_t> vcpu_host_cpus(const VmConfig& c, uint32_t index) {
  for (const VcpuAffinity& a : c.affinity)
    if (a.vcpu == index) return a.host_cpus;
  return {};
}

Result<> pin_thread(pthread_t thread, const std::vector<uint32_t>& cpus) {
  if (cpus.empty()) return fail("pinning a thread: empty CPU set");
  CpuSet set;
  for (uint32_t cpu : cpus) {
    if (cpu >= kMaxHostCpus) return fail("pinning a thread: host CPU {} is out of range", cpu);
    set.add(cpu);
  }
  if (int e = pthread_setaffinity_np(thread, set.size(), set.get()); e != 0)
    return fail_with(e, "pinning a thread to host CPUs {}", fmt::join(cpus, ","));
  return {};
}

Result<std::vector<uint32_t>> thread_cpus(pthread_t thread) {
  CpuSet set;
  if (int e = pthread_getaffinity_np(thread, set.size(), set.get()); e != 0)
    return fail_with(e, "reading a thread's CPU affinity");
  return set.list();
}

Result<std::vector<x86::AcpiNumaNode>> acpi_numa_nodes(const VmConfig& c,
                                                       std::span<const RamZone> zones) {
  size_t n = c.numa.size();
  std::vector<x86::AcpiNumaNode> nodes(n);
  if (n == 0) return nodes;
  for (auto& node : nodes) node.distances.assign(n, kNumaRemoteDistance);
  bool any_zone_named = false;
  for (const NumaNodeConfig& cfg : c.numa) {
    if (cfg.guest_numa_id >= n)
      return fail("--numa: guest_numa_id={} is not in 0-{}", cfg.guest_numa_id, n - 1);
    x86::AcpiNumaNode& node = nodes[cfg.guest_numa_id];
    node.cpus = cfg.cpus;
    node.distances[cfg.guest_numa_id] = kNumaLocalDistance;
    for (const NumaDistance& d : cfg.distances) {
      if (d.destination >= n || d.distance > 255)
        return fail("--numa: guest_numa_id={}: bad distance {} to node {}", cfg.guest_numa_id,
                    d.distance, d.destination);
      node.distances[d.destination] = static_cast<uint8_t>(d.distance);
    }
    any_zone_named |= !cfg.memory_zones.empty();
  }

  std::map<std::string, uint32_t> zone_node;
  for (const NumaNodeConfig& cfg : c.numa) {
    for (const std::string& id : cfg.memory_zones) {
      auto z =
          std::find_if(zones.begin(), zones.end(), [&](const auto& r) { return r.name == id; });
      if (id.empty() || z == zones.end())
        return fail(
            "--numa: guest_numa_id={}: memory zone '{}' is not defined (--memory-zone "
            "id={},...)",
            cfg.guest_numa_id, id, id);
      auto [it, fresh] = zone_node.emplace(id, cfg.guest_numa_id);
      if (!fresh)
        return fail("--numa: memory zone '{}' is in guest_numa_id={} and guest_numa_id={}", id,
                    it->second, cfg.guest_numa_id);
      for (const RamRange& r : z->ranges)
        nodes[cfg.guest_numa_id].memory.push_back({r.gpa, r.size});
    }
  }
  if (!any_zone_named) {
    // No node names a zone: all of RAM is on node 0.
    for (const RamZone& z : zones)
      for (const RamRange& r : z.ranges) nodes[0].memory.push_back({r.gpa, r.size});
    return nodes;
  }
  for (const RamZone& z : zones)
    if (!zone_node.contains(z.name))
      return fail(
          "--numa: memory zone '{}' belongs to no guest_numa_id; with --numa "
          "memory_zones=, every zone must be on a node",
          z.name.empty() ? "(--memory)" : z.name);
  return nodes;
}

}  // namespace skiff

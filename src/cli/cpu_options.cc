#include "cli/cpu_options.h"

#include <set>
#include <string>

#include "cli/kv_options.h"

namespace skiff::cli {

namespace {

// Host CPU numbers: Linux's NR_CPUS is at most 8192.
constexpr uint32_t kMaxHostCpu = 8191;

// "[...]" -> "..." when the first bracket closes at the end ("[0@[1],2@[3]]");
// anything else is returned whole ("0-3", "0@[1]"), for split_top_level,
// which also catches unbalanced brackets.
Result<std::string_view> strip_brackets(std::string_view option, std::string_view text) {
  if (!text.starts_with('[')) return text;
  int depth = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '[') ++depth;
    if (text[i] == ']' && --depth == 0)
      return i + 1 == text.size() ? text.substr(1, text.size() - 2) : text;
  }
  return fail("{}: unbalanced '[' in '{}'", option, text);
}

// "V@X" -> (V, X).
Result<std::pair<uint32_t, std::string_view>> split_at(std::string_view option,
                                                       std::string_view item, uint32_t max) {
  auto at = item.find('@');
  if (at == std::string_view::npos)
    return fail("{}: '{}' is not of the form N@VALUE", option, item);
  auto n = SKIFF_TRY(parse_uint(option, item.substr(0, at), 0, max));
  return std::pair{static_cast<uint32_t>(n), item.substr(at + 1)};
}

Result<CpuTopologyConfig> parse_topology(std::string_view text) {
  constexpr std::string_view kOption = "--cpus topology";
  uint32_t parts[4];
  size_t n = 0;
  std::string_view rest = text;
  while (true) {
    auto colon = rest.find(':');
    std::string_view part = rest.substr(0, colon);
    if (n == 4)
      return fail("{}: '{}' has more than 4 parts (threads:cores:dies:packages)", kOption, text);
    parts[n++] = static_cast<uint32_t>(SKIFF_TRY(parse_uint(kOption, part, 1, kMaxVcpus)));
    if (colon == std::string_view::npos) break;
    rest = rest.substr(colon + 1);
  }
  if (n != 4)
    return fail("{}: '{}' is not threads_per_core:cores_per_die:dies_per_package:packages", kOption,
                text);
  return CpuTopologyConfig{parts[0], parts[1], parts[2], parts[3]};
}

// [0@[2,3],1@[4-5]]
Result<std::vector<VcpuAffinity>> parse_affinity(std::string_view text) {
  constexpr std::string_view kOption = "--cpus affinity";
  std::string_view inner = SKIFF_TRY(strip_brackets(kOption, text));
  std::vector<VcpuAffinity> out;
  if (inner.empty()) return out;
  for (std::string_view item : SKIFF_TRY(split_top_level(kOption, inner))) {
    auto [vcpu, cpus] = SKIFF_TRY(split_at(kOption, item, kMaxVcpus - 1));
    std::string what = fmt::format("{} (vCPU {})", kOption, vcpu);
    VcpuAffinity a{vcpu, SKIFF_TRY(parse_number_list(what, cpus, kMaxHostCpu))};
    if (a.host_cpus.empty()) return fail("{}: no host CPUs in '{}'", what, item);
    for (const auto& prev : out)
      if (prev.vcpu == vcpu) return fail("{}: vCPU {} is given twice in '{}'", kOption, vcpu, text);
    out.push_back(std::move(a));
  }
  return out;
}

// [1@20,2@25]
Result<std::vector<NumaDistance>> parse_distances(std::string_view text) {
  constexpr std::string_view kOption = "--numa distances";
  std::string_view inner = SKIFF_TRY(strip_brackets(kOption, text));
  std::vector<NumaDistance> out;
  if (inner.empty()) return out;
  for (std::string_view item : SKIFF_TRY(split_top_level(kOption, inner))) {
    auto [dest, value] = SKIFF_TRY(split_at(kOption, item, 254));
    auto d = SKIFF_TRY(
        parse_uint(fmt::format("{} (to node {})", kOption, dest), value, kNumaLocalDistance, 255));
    out.push_back({dest, static_cast<uint32_t>(d)});
  }
  return out;
}

// [z0,z1] or z0
Result<std::vector<std::string>> parse_zone_list(std::string_view text) {
  constexpr std::string_view kOption = "--numa memory_zones";
  std::string_view inner = SKIFF_TRY(strip_brackets(kOption, text));
  std::vector<std::string> out;
  if (inner.empty()) return out;
  for (std::string_view item : SKIFF_TRY(split_top_level(kOption, inner))) {
    if (item.empty()) return fail("{}: empty zone id in '{}'", kOption, text);
    out.emplace_back(item);
  }
  return out;
}

}  // namespace

Result<std::vector<uint32_t>> parse_number_list(std::string_view option, std::string_view text,
                                                uint32_t max) {
  std::string_view inner = SKIFF_TRY(strip_brackets(option, text));
  std::vector<uint32_t> out;
  std::set<uint32_t> seen;
  if (inner.empty()) return out;
  for (std::string_view item : SKIFF_TRY(split_top_level(option, inner))) {
    auto dash = item.find('-');
    uint64_t lo = SKIFF_TRY(parse_uint(option, item.substr(0, dash), 0, max));
    uint64_t hi = lo;
    if (dash != std::string_view::npos) {
      hi = SKIFF_TRY(parse_uint(option, item.substr(dash + 1), 0, max));
      if (hi < lo) return fail("{}: range '{}' runs backwards", option, item);
    }
    for (uint64_t v = lo; v <= hi; ++v) {
      if (!seen.insert(static_cast<uint32_t>(v)).second)
        return fail("{}: {} is listed twice in '{}'", option, v, text);
      out.push_back(static_cast<uint32_t>(v));
    }
  }
  return out;
}

Result<> parse_cpus(std::string_view value, VmConfig& vm) {
  auto kv = SKIFF_TRY(parse_kv("--cpus", value, {"boot", "max", "topology", "affinity"}));
  if (auto it = kv.find("boot"); it != kv.end())
    vm.boot_cpus =
        static_cast<uint32_t>(SKIFF_TRY(parse_uint("--cpus boot", it->second, 1, kMaxVcpus)));
  vm.max_cpus = vm.boot_cpus;
  if (auto it = kv.find("max"); it != kv.end()) {
    vm.max_cpus =
        static_cast<uint32_t>(SKIFF_TRY(parse_uint("--cpus max", it->second, 1, kMaxVcpus)));
    if (vm.max_cpus < vm.boot_cpus)
      return fail("--cpus: max={} is below boot={}", vm.max_cpus, vm.boot_cpus);
  }
  if (auto it = kv.find("topology"); it != kv.end()) {
    vm.topology = SKIFF_TRY(parse_topology(it->second));
    if (vm.topology->vcpus() != vm.max_cpus)
      return fail(
          "--cpus: topology={} describes {} vCPUs, but max is {} (threads x cores x dies "
          "x packages must equal max)",
          it->second, vm.topology->vcpus(), vm.max_cpus);
  }
  if (auto it = kv.find("affinity"); it != kv.end()) {
    vm.affinity = SKIFF_TRY(parse_affinity(it->second));
    for (const auto& a : vm.affinity)
      if (a.vcpu >= vm.max_cpus)
        return fail("--cpus: affinity for vCPU {}, but the VM has {} vCPUs (0-{})", a.vcpu,
                    vm.max_cpus, vm.max_cpus - 1);
  }
  return {};
}

Result<NumaNodeConfig> parse_numa(std::string_view value) {
  auto kv =
      SKIFF_TRY(parse_kv("--numa", value, {"guest_numa_id", "cpus", "memory_zones", "distances"}));
  NumaNodeConfig n;
  auto id = kv.find("guest_numa_id");
  if (id == kv.end()) return fail("--numa: guest_numa_id=N is required in '{}'", value);
  n.guest_numa_id =
      static_cast<uint32_t>(SKIFF_TRY(parse_uint("--numa guest_numa_id", id->second, 0, 254)));
  if (auto it = kv.find("cpus"); it != kv.end())
    n.cpus = SKIFF_TRY(parse_number_list("--numa cpus", it->second, kMaxVcpus - 1));
  if (auto it = kv.find("memory_zones"); it != kv.end())
    n.memory_zones = SKIFF_TRY(parse_zone_list(it->second));
  if (auto it = kv.find("distances"); it != kv.end())
    n.distances = SKIFF_TRY(parse_distances(it->second));
  return n;
}

}  // namespace skiff::cli

#include "cli/memory_options.h"

#include <set>

#include "cli/kv_options.h"
#include "memory/ram_backing.h"
#include "memory/ram_file.h"

namespace skiff::cli {

namespace {

constexpr uint32_t kMaxHostNumaNode = 1023;  // Linux MAX_NUMNODES (NODES_SHIFT 10)

// The backing keys --memory and --memory-zone share; `what` prefixes messages.
Result<RamOptions> parse_backing(const std::string& what, const KvMap& kv) {
  RamOptions o;
  auto flag = [&](const char* key, bool& out) -> Result<> {
    if (auto it = kv.find(key); it != kv.end())
      out = SKIFF_TRY(parse_switch(fmt::format("{} {}", what, key), it->second));
    return {};
  };
  SKIFF_TRY_VOID(flag("shared", o.shared));
  SKIFF_TRY_VOID(flag("hugepages", o.hugepages));
  SKIFF_TRY_VOID(flag("mergeable", o.mergeable));
  SKIFF_TRY_VOID(flag("prefault", o.prefault));
  if (auto it = kv.find("hugepage_size"); it != kv.end()) {
    if (!o.hugepages) return fail("{}: hugepage_size={} needs hugepages=on", what, it->second);
    o.hugepage_size = SKIFF_TRY(parse_size(fmt::format("{} hugepage_size", what), it->second));
    if (o.hugepage_size != kHugePage2M && o.hugepage_size != kHugePage1G)
      return fail("{}: hugepage_size={} is not 2M or 1G", what, it->second);
  }
  if (auto it = kv.find("host_numa_node"); it != kv.end())
    o.host_numa_node = static_cast<uint32_t>(SKIFF_TRY(
        parse_uint(fmt::format("{} host_numa_node", what), it->second, 0, kMaxHostNumaNode)));
  SKIFF_TRY_VOID(check_ram_options(what, o));
  return o;
}

// The size as the user wrote it, for messages.
Result<> check_size(const std::string& what, const KvMap& kv, uint64_t size, const RamOptions& o) {
  if (auto r = check_ram_size(what, size, o); !r) {
    auto it = kv.find("size");
    std::string text = it != kv.end() ? it->second : std::to_string(size);
    if (size == 0) return fail("{}: size={}: RAM must not be empty", what, text);
    if (o.hugepages)
      return fail("{}: size={} is not a multiple of the {} huge page size", what, text,
                  huge_page_name(o.page_size()));
    return fail("{}: size={} is not a multiple of 4 KiB", what, text);
  }
  return {};
}

Result<MemoryZoneConfig> parse_zone(const std::string& value, Thp thp) {
  auto kv = SKIFF_TRY(parse_kv("--memory-zone", value,
                               {"id", "size", "file", "shared", "hugepages", "hugepage_size",
                                "mergeable", "prefault", "host_numa_node"}));
  MemoryZoneConfig z;
  auto id = kv.find("id");
  if (id == kv.end() || id->second.empty())
    return fail("--memory-zone {}: id=ID is required (--numa memory_zones= refers to it)", value);
  z.id = id->second;
  std::string what = fmt::format("--memory-zone id={}", z.id);
  auto size = kv.find("size");
  if (size == kv.end()) return fail("{}: size=SIZE is required", what);
  z.size = SKIFF_TRY(parse_size(what + " size", size->second));
  z.backing = SKIFF_TRY(parse_backing(what, kv));
  z.backing.thp = thp;
  if (auto it = kv.find("file"); it != kv.end()) {
    if (it->second.empty()) return fail("{}: file= is empty: give a file or a directory", what);
    z.backing.file = it->second;
    SKIFF_TRY_VOID(check_ram_options(what, z.backing));
  }
  SKIFF_TRY_VOID(check_size(what, kv, z.size, z.backing));
  // The path is user input: a missing directory or a size the file cannot
  // take is a usage error now, before any RAM is set up.
  if (!z.backing.file.empty()) (void)SKIFF_TRY(check_ram_file(what, z.size, z.backing));
  return z;
}

}  // namespace

Result<> parse_memory(const std::string& memory, bool memory_given,
                      const std::vector<std::string>& zones, VmConfig& vm) {
  auto mem = SKIFF_TRY(parse_kv("--memory", memory,
                                {"size", "shared", "hugepages", "hugepage_size", "mergeable",
                                 "prefault", "host_numa_node", "thp", "file"}));
  // Cloud Hypervisor has file= only on memory zones (MemoryZoneConfig.file).
  if (mem.contains("file"))
    return fail(
        "--memory: file={} is a --memory-zone option: give --memory size=0 --memory-zone "
        "id=ID,size=SIZE,file={}",
        mem["file"], mem["file"]);
  Thp thp = Thp::kDefault;
  if (auto it = mem.find("thp"); it != mem.end())
    thp = SKIFF_TRY(parse_switch("--memory thp", it->second)) ? Thp::kOn : Thp::kOff;
  uint64_t size = vm.memory_size;
  if (auto it = mem.find("size"); it != mem.end())
    size = SKIFF_TRY(parse_size("--memory size", it->second));

  if (!zones.empty()) {
    // Cloud Hypervisor's rule: with zones, all RAM is in the zones.
    if (memory_given) {
      if (mem.contains("size") && size != 0)
        return fail(
            "--memory: size={} with --memory-zone: give --memory size=0 (guest RAM is the sum "
            "of the zones)",
            mem["size"]);
      for (const char* key :
           {"shared", "hugepages", "hugepage_size", "mergeable", "prefault", "host_numa_node"})
        if (mem.contains(key))
          return fail("--memory: {}={} with --memory-zone: give {}= on each --memory-zone", key,
                      mem[key], key);
    }
    std::set<std::string> ids;
    uint64_t total = 0;
    for (const auto& value : zones) {
      auto z = SKIFF_TRY(parse_zone(value, thp));
      if (!ids.insert(z.id).second) return fail("--memory-zone: id={} is given twice", z.id);
      if (total + z.size < total) return fail("--memory-zone id={}: sizes overflow", z.id);
      total += z.size;
      vm.memory.zones.push_back(std::move(z));
    }
    if (total < kMinMemory)
      return fail("--memory-zone: the zones add up to {} bytes, below the minimum of {} MiB", total,
                  kMinMemory >> 20);
    vm.memory_size = total;
    vm.memory.backing.thp = thp;
    return {};
  }

  vm.memory_size = size;
  if (size < kMinMemory)
    return fail("--memory: size={} is below the minimum of {} MiB", mem["size"], kMinMemory >> 20);
  vm.memory.backing = SKIFF_TRY(parse_backing("--memory", mem));
  vm.memory.backing.thp = thp;
  SKIFF_TRY_VOID(check_size("--memory", mem, size, vm.memory.backing));
  return {};
}

}  // namespace skiff::cli

#include "api/vm_config_json.h"

#include <initializer_list>

#include <fmt/format.h>

#include "memory/ram_backing.h"
#include "memory/ram_file.h"
#include "net/mac_address.h"

namespace skiff::api {

namespace {

using json = nlohmann::json;

// What a schema field may hold for skiff to accept it.
enum class Rule {
  kHandled,  // parsed by the caller
  kFalse,    // a boolean, only false (the feature is not implemented)
  kTrue,     // a boolean, only true (false would ask for something skiff cannot do)
  kBool,     // any boolean: has no effect on skiff's machine either way
  kString,   // any string: has no effect on skiff's machine
  kZero,     // an integer, only 0
  kEmpty,    // an array, only empty
  kAbsent,   // only absent or null
};

struct Field {
  std::string_view name;
  Rule rule;
  std::string_view feature;  // for "... is not supported yet"
};

std::string type_name(const json& v) {
  return v.type_name();
}

Result<> check_fields(const json& obj, std::string_view path, std::initializer_list<Field> fields) {
  if (!obj.is_object()) return fail("{}: expected a JSON object, got {}", path, type_name(obj));
  for (const auto& [key, value] : obj.items()) {
    const Field* f = nullptr;
    for (const Field& candidate : fields)
      if (candidate.name == key) f = &candidate;
    if (!f) return fail("{}: unknown field '{}'", path, key);
    if (value.is_null() || f->rule == Rule::kHandled) continue;
    std::string where = fmt::format("{}.{}", path, key);
    auto unsupported = [&] { return fail("{}: {} is not supported yet", where, f->feature); };
    switch (f->rule) {
      case Rule::kFalse:
      case Rule::kTrue:
      case Rule::kBool:
        if (!value.is_boolean())
          return fail("{}: expected a boolean, got {}", where, type_name(value));
        if (f->rule == Rule::kFalse && value.get<bool>()) return unsupported();
        if (f->rule == Rule::kTrue && !value.get<bool>()) return unsupported();
        break;
      case Rule::kString:
        if (!value.is_string())
          return fail("{}: expected a string, got {}", where, type_name(value));
        break;
      case Rule::kZero:
        if (!value.is_number_integer())
          return fail("{}: expected an integer, got {}", where, type_name(value));
        if (value.get<int64_t>() != 0) return unsupported();
        break;
      case Rule::kEmpty:
        if (!value.is_array())
          return fail("{}: expected an array, got {}", where, type_name(value));
        if (!value.empty()) return unsupported();
        break;
      case Rule::kAbsent:
        return unsupported();
      case Rule::kHandled:
        break;
    }
  }
  return {};
}

// An integer in [min, max]; JSON floats, strings and negatives are refused.
Result<uint64_t> get_uint(const json& obj, std::string_view path, std::string_view key,
                          uint64_t min, uint64_t max) {
  const json& v = obj.at(std::string(key));
  if (!v.is_number_integer())
    return fail("{}.{}: expected an integer, got {}", path, key, type_name(v));
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u >= min && u <= max) return u;
    return fail("{}.{}: {} is out of range [{}, {}]", path, key, u, min, max);
  }
  return fail("{}.{}: {} is out of range [{}, {}]", path, key, v.get<int64_t>(), min, max);
}

// An array of integers, each in [0, max].
Result<std::vector<uint32_t>> get_uint_list(const json& obj, std::string_view path,
                                            std::string_view key, uint64_t max) {
  const json& v = obj.at(std::string(key));
  if (!v.is_array()) return fail("{}.{}: expected an array, got {}", path, key, type_name(v));
  std::vector<uint32_t> out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number_unsigned() || v[i].get<uint64_t>() > max)
      return fail("{}.{}[{}]: {} is not an integer in [0, {}]", path, key, i, v[i].dump(), max);
    out.push_back(static_cast<uint32_t>(v[i].get<uint64_t>()));
  }
  return out;
}

// A string field, "" when absent or null.
Result<std::string> get_string(const json& obj, std::string_view path, std::string_view key) {
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return std::string();
  if (!it->is_string()) return fail("{}.{}: expected a string, got {}", path, key, type_name(*it));
  std::string s = it->get<std::string>();
  if (s.find('\0') != std::string::npos) return fail("{}.{}: contains a NUL character", path, key);
  return s;
}

bool has(const json& obj, std::string_view key) {
  auto it = obj.find(std::string(key));
  return it != obj.end() && !it->is_null();
}

Result<> parse_payload(const json& p, VmConfig& c) {
  SKIFF_TRY_VOID(check_fields(p, "payload",
                              {{"kernel", Rule::kHandled, ""},
                               {"cmdline", Rule::kHandled, ""},
                               {"initramfs", Rule::kHandled, ""},
                               {"firmware", Rule::kAbsent, "booting firmware"},
                               {"igvm", Rule::kAbsent, "IGVM payloads"},
                               {"host_data", Rule::kAbsent, "confidential-guest host data"}}));
  c.kernel = SKIFF_TRY(get_string(p, "payload", "kernel"));
  if (c.kernel.empty())
    return fail("payload.kernel: required (a bzImage, PVH ELF or Multiboot kernel)");
  c.cmdline = SKIFF_TRY(get_string(p, "payload", "cmdline"));
  c.initramfs = SKIFF_TRY(get_string(p, "payload", "initramfs"));
  return {};
}

Result<> parse_cpus(const json& j, VmConfig& c) {
  SKIFF_TRY_VOID(check_fields(j, "cpus",
                              {{"boot_vcpus", Rule::kHandled, ""},
                               {"max_vcpus", Rule::kHandled, ""},
                               {"topology", Rule::kHandled, ""},
                               {"kvm_hyperv", Rule::kFalse, "Hyper-V enlightenment"},
                               {"max_phys_bits", Rule::kAbsent, "limiting physical address bits"},
                               {"nested", Rule::kBool, ""},
                               {"affinity", Rule::kHandled, ""},
                               {"features", Rule::kAbsent, "CPU features (AMX)"},
                               {"core_scheduling", Rule::kAbsent, "core scheduling"}}));
  if (!has(j, "boot_vcpus")) return fail("cpus.boot_vcpus: required");
  c.boot_cpus = static_cast<uint32_t>(SKIFF_TRY(get_uint(j, "cpus", "boot_vcpus", 1, kMaxVcpus)));
  c.max_cpus = c.boot_cpus;
  if (has(j, "max_vcpus")) {
    // Above boot_vcpus: the MADT lists the rest as hotpluggable (hotplug
    // itself is not implemented yet).
    c.max_cpus = static_cast<uint32_t>(SKIFF_TRY(get_uint(j, "cpus", "max_vcpus", 1, kMaxVcpus)));
    if (c.max_cpus < c.boot_cpus)
      return fail("cpus.max_vcpus: {} is below boot_vcpus {}", c.max_cpus, c.boot_cpus);
  }
  if (has(j, "topology")) {
    const json& t = j.at("topology");
    SKIFF_TRY_VOID(check_fields(t, "cpus.topology",
                                {{"threads_per_core", Rule::kHandled, ""},
                                 {"cores_per_die", Rule::kHandled, ""},
                                 {"dies_per_package", Rule::kHandled, ""},
                                 {"packages", Rule::kHandled, ""}}));
    auto count = [&](std::string_view key) -> Result<uint32_t> {
      if (!has(t, key)) return 1u;
      return static_cast<uint32_t>(SKIFF_TRY(get_uint(t, "cpus.topology", key, 1, kMaxVcpus)));
    };
    c.topology =
        CpuTopologyConfig{SKIFF_TRY(count("threads_per_core")), SKIFF_TRY(count("cores_per_die")),
                          SKIFF_TRY(count("dies_per_package")), SKIFF_TRY(count("packages"))};
  }
  if (has(j, "affinity")) {
    const json& list = j.at("affinity");
    if (!list.is_array()) return fail("cpus.affinity: expected an array, got {}", type_name(list));
    for (size_t i = 0; i < list.size(); ++i) {
      std::string path = fmt::format("cpus.affinity[{}]", i);
      SKIFF_TRY_VOID(check_fields(
          list[i], path, {{"vcpu", Rule::kHandled, ""}, {"host_cpus", Rule::kHandled, ""}}));
      if (!has(list[i], "vcpu") || !has(list[i], "host_cpus"))
        return fail("{}: vcpu and host_cpus are required", path);
      VcpuAffinity a;
      a.vcpu = static_cast<uint32_t>(SKIFF_TRY(get_uint(list[i], path, "vcpu", 0, kMaxVcpus - 1)));
      a.host_cpus = SKIFF_TRY(get_uint_list(list[i], path, "host_cpus", 8191));
      c.affinity.push_back(std::move(a));
    }
  }
  return {};  // checked against each other and the host by validate_cpu_placement
}

// NumaConfig: one guest NUMA node (SRAT/SLIT).
Result<NumaNodeConfig> parse_numa_node(const json& j, const std::string& path) {
  SKIFF_TRY_VOID(check_fields(j, path,
                              {{"guest_numa_id", Rule::kHandled, ""},
                               {"cpus", Rule::kHandled, ""},
                               {"distances", Rule::kHandled, ""},
                               {"memory_zones", Rule::kHandled, ""},
                               {"pci_segments", Rule::kEmpty, "NUMA affinity of PCI segments"},
                               {"device_id", Rule::kString, ""}}));
  if (!has(j, "guest_numa_id")) return fail("{}.guest_numa_id: required", path);
  NumaNodeConfig n;
  n.guest_numa_id = static_cast<uint32_t>(SKIFF_TRY(get_uint(j, path, "guest_numa_id", 0, 254)));
  if (has(j, "cpus")) n.cpus = SKIFF_TRY(get_uint_list(j, path, "cpus", kMaxVcpus - 1));
  if (has(j, "memory_zones")) {
    const json& zones = j.at("memory_zones");
    if (!zones.is_array())
      return fail("{}.memory_zones: expected an array, got {}", path, type_name(zones));
    for (size_t i = 0; i < zones.size(); ++i) {
      if (!zones[i].is_string())
        return fail("{}.memory_zones[{}]: expected a string, got {}", path, i, type_name(zones[i]));
      n.memory_zones.push_back(zones[i].get<std::string>());
    }
  }
  if (has(j, "distances")) {
    const json& list = j.at("distances");
    if (!list.is_array())
      return fail("{}.distances: expected an array, got {}", path, type_name(list));
    for (size_t i = 0; i < list.size(); ++i) {
      std::string where = fmt::format("{}.distances[{}]", path, i);
      SKIFF_TRY_VOID(check_fields(
          list[i], where, {{"destination", Rule::kHandled, ""}, {"distance", Rule::kHandled, ""}}));
      if (!has(list[i], "destination") || !has(list[i], "distance"))
        return fail("{}: destination and distance are required", where);
      NumaDistance d;
      d.destination =
          static_cast<uint32_t>(SKIFF_TRY(get_uint(list[i], where, "destination", 0, 254)));
      d.distance = static_cast<uint32_t>(SKIFF_TRY(get_uint(list[i], where, "distance", 10, 255)));
      n.distances.push_back(d);
    }
  }
  return n;
}

// The backing fields MemoryConfig and MemoryZoneConfig share (checked like
// --memory: memory/ram_backing.h).
Result<RamOptions> parse_ram_options(const json& j, const std::string& path) {
  RamOptions o;
  for (auto [key, out] :
       {std::pair{"shared", &o.shared}, std::pair{"hugepages", &o.hugepages},
        std::pair{"mergeable", &o.mergeable}, std::pair{"prefault", &o.prefault}}) {
    if (!has(j, key)) continue;
    if (!j.at(key).is_boolean())
      return fail("{}.{}: expected a boolean, got {}", path, key, type_name(j.at(key)));
    *out = j.at(key).get<bool>();
  }
  if (has(j, "hugepage_size")) {
    uint64_t size = SKIFF_TRY(get_uint(j, path, "hugepage_size", 1, kHugePage1G));
    if (!o.hugepages) return fail("{}.hugepage_size: {} needs hugepages true", path, size);
    o.hugepage_size = size;
  }
  if (has(j, "host_numa_node"))
    o.host_numa_node =
        static_cast<uint32_t>(SKIFF_TRY(get_uint(j, path, "host_numa_node", 0, 1023)));
  SKIFF_TRY_VOID(check_ram_options(path, o));
  return o;
}

Result<MemoryZoneConfig> parse_memory_zone(const json& j, const std::string& path) {
  SKIFF_TRY_VOID(check_fields(j, path,
                              {{"id", Rule::kHandled, ""},
                               {"size", Rule::kHandled, ""},
                               {"file", Rule::kHandled, ""},
                               {"mergeable", Rule::kHandled, ""},
                               {"shared", Rule::kHandled, ""},
                               {"hugepages", Rule::kHandled, ""},
                               {"hugepage_size", Rule::kHandled, ""},
                               {"host_numa_node", Rule::kHandled, ""},
                               {"hotplug_size", Rule::kZero, "memory hotplug"},
                               {"hotplugged_size", Rule::kZero, "memory hotplug"},
                               {"prefault", Rule::kHandled, ""},
                               {"reserve", Rule::kFalse, "reserving memory"}}));
  MemoryZoneConfig z;
  z.id = SKIFF_TRY(get_string(j, path, "id"));
  if (z.id.empty()) return fail("{}.id: required (numa memory_zones refer to it)", path);
  if (!has(j, "size")) return fail("{}.size: required (bytes)", path);
  z.size = SKIFF_TRY(get_uint(j, path, "size", 1, kMaxMemory));
  z.backing = SKIFF_TRY(parse_ram_options(j, path));
  if (has(j, "file")) {
    z.backing.file = SKIFF_TRY(get_string(j, path, "file"));
    if (z.backing.file.empty()) return fail("{}.file: empty: give a file or a directory", path);
    SKIFF_TRY_VOID(check_ram_options(path, z.backing));
  }
  SKIFF_TRY_VOID(check_ram_size(path, z.size, z.backing));
  // As on the command line: a bad path is the client's error.
  if (!z.backing.file.empty()) (void)SKIFF_TRY(check_ram_file(path, z.size, z.backing));
  return z;
}

Result<> parse_memory(const json& j, VmConfig& c) {
  SKIFF_TRY_VOID(check_fields(j, "memory",
                              {{"size", Rule::kHandled, ""},
                               {"hotplug_size", Rule::kZero, "memory hotplug"},
                               {"hotplugged_size", Rule::kZero, "memory hotplug"},
                               {"mergeable", Rule::kHandled, ""},
                               {"hotplug_method", Rule::kString, ""},
                               {"shared", Rule::kHandled, ""},
                               {"hugepages", Rule::kHandled, ""},
                               {"hugepage_size", Rule::kHandled, ""},
                               {"prefault", Rule::kHandled, ""},
                               {"reserve", Rule::kFalse, "reserving memory"},
                               {"thp", Rule::kHandled, ""},
                               {"zones", Rule::kHandled, ""}}));
  if (!has(j, "size")) return fail("memory.size: required (bytes)");
  Thp thp = Thp::kDefault;
  if (has(j, "thp")) {
    if (!j.at("thp").is_boolean())
      return fail("memory.thp: expected a boolean, got {}", type_name(j.at("thp")));
    thp = j.at("thp").get<bool>() ? Thp::kOn : Thp::kOff;
  }
  if (has(j, "zones") && !j.at("zones").is_array())
    return fail("memory.zones: expected an array, got {}", type_name(j.at("zones")));
  if (has(j, "zones") && !j.at("zones").empty()) {
    const json& zones = j.at("zones");
    // Cloud Hypervisor's rule: with zones, all RAM is in the zones.
    uint64_t size = SKIFF_TRY(get_uint(j, "memory", "size", 0, kMaxMemory));
    if (size != 0)
      return fail("memory.size: {} with memory.zones: must be 0 (RAM is the sum of the zones)",
                  size);
    for (const char* key : {"shared", "hugepages", "hugepage_size", "mergeable", "prefault"})
      if (has(j, key) && j.at(key) != json(false))
        return fail("memory.{}: with memory.zones, set it on each zone", key);
    uint64_t total = 0;
    for (size_t i = 0; i < zones.size(); ++i) {
      std::string path = fmt::format("memory.zones[{}]", i);
      auto z = SKIFF_TRY(parse_memory_zone(zones[i], path));
      z.backing.thp = thp;
      for (const auto& other : c.memory.zones)
        if (other.id == z.id) return fail("{}.id: '{}' is used twice", path, z.id);
      total += z.size;
      if (total > kMaxMemory) return fail("memory.zones: more than {} bytes in all", kMaxMemory);
      c.memory.zones.push_back(std::move(z));
    }
    if (total < kMinMemory)
      return fail("memory.zones: {} bytes in all, below the minimum of {}", total, kMinMemory);
    c.memory_size = total;
    c.memory.backing.thp = thp;
    return {};
  }
  c.memory_size = SKIFF_TRY(get_uint(j, "memory", "size", kMinMemory, kMaxMemory));
  c.memory.backing = SKIFF_TRY(parse_ram_options(j, "memory"));
  c.memory.backing.thp = thp;
  SKIFF_TRY_VOID(check_ram_size("memory", c.memory_size, c.memory.backing));
  return {};
}

// MemoryConfig fields of one backing (defaults left out).
void ram_options_to_json(const RamOptions& o, json& out) {
  if (o.shared) out["shared"] = true;
  if (o.hugepages) {
    out["hugepages"] = true;
    out["hugepage_size"] = o.hugepage_size;
  }
  if (o.mergeable) out["mergeable"] = true;
  if (o.prefault) out["prefault"] = true;
}

json memory_to_json(const VmConfig& c) {
  json m{{"size", c.memory.zones.empty() ? c.memory_size : 0}};
  if (c.memory.backing.thp != Thp::kDefault) m["thp"] = c.memory.backing.thp == Thp::kOn;
  if (c.memory.zones.empty()) {
    ram_options_to_json(c.memory.backing, m);
    return m;
  }
  for (const auto& z : c.memory.zones) {
    json zone{{"id", z.id}, {"size", z.size}};
    if (!z.backing.file.empty()) zone["file"] = z.backing.file;
    ram_options_to_json(z.backing, zone);
    if (z.backing.host_numa_node) zone["host_numa_node"] = *z.backing.host_numa_node;
    m["zones"].push_back(zone);
  }
  return m;
}

// SerialConfig / ConsoleConfig: mode Off, Pty, Tty, File, Socket, Null.
Result<std::string> parse_char_mode(const json& j, std::string_view path, bool console) {
  if (console)
    SKIFF_TRY_VOID(check_fields(j, path,
                                {{"mode", Rule::kHandled, ""},
                                 {"file", Rule::kHandled, ""},
                                 {"socket", Rule::kHandled, ""},
                                 {"iommu", Rule::kFalse, "an IOMMU"},
                                 {"id", Rule::kString, ""},
                                 {"pci_segment", Rule::kZero, "PCI segments"},
                                 {"pci_device_id", Rule::kAbsent, "choosing PCI device ids"}}));
  else
    SKIFF_TRY_VOID(check_fields(j, path,
                                {{"mode", Rule::kHandled, ""},
                                 {"file", Rule::kHandled, ""},
                                 {"socket", Rule::kHandled, ""}}));
  if (!has(j, "mode")) return fail("{}.mode: required (Off, Null, Tty, Pty or File)", path);
  std::string mode = SKIFF_TRY(get_string(j, path, "mode"));
  std::string file = SKIFF_TRY(get_string(j, path, "file"));
  if (has(j, "socket") && mode != "Socket")
    return fail("{}.socket: only meaningful with mode Socket", path);
  if (!file.empty() && mode != "File") return fail("{}.file: only meaningful with mode File", path);
  if (mode == "Off" || mode == "Null") return std::string("off");
  if (mode == "Tty" || mode == "Pty" || mode == "File") {
    if (mode == "Tty") return std::string("tty");
    if (mode == "Pty") return std::string("pty");
    if (file.empty()) return fail("{}.file: required with mode File", path);
    return "file=" + file;
  }
  if (mode == "Socket") return fail("{}.mode: Socket is not supported yet", path);
  return fail("{}.mode: '{}' is not one of Off, Null, Tty, Pty, File, Socket", path, mode);
}

// BalloonConfig. statistics_polling_interval is not in the schema: only
// --balloon sets it.
Result<> parse_balloon(const json& j, VmConfig& c) {
  SKIFF_TRY_VOID(check_fields(j, "balloon",
                              {{"size", Rule::kHandled, ""},
                               {"deflate_on_oom", Rule::kBool, ""},
                               {"free_page_reporting", Rule::kBool, ""},
                               {"id", Rule::kString, ""},
                               {"iommu", Rule::kFalse, "an IOMMU"},
                               {"pci_segment", Rule::kZero, "PCI segments"},
                               {"pci_device_id", Rule::kAbsent, "choosing PCI device ids"}}));
  if (!has(j, "size")) return fail("balloon.size: required (bytes, 0 for an empty balloon)");
  BalloonConfig b;
  b.size = SKIFF_TRY(get_uint(j, "balloon", "size", 0, c.memory_size));
  b.deflate_on_oom = has(j, "deflate_on_oom") && j.at("deflate_on_oom").get<bool>();
  b.free_page_reporting = has(j, "free_page_reporting") && j.at("free_page_reporting").get<bool>();
  c.balloon = b;
  return {};
}

// RngConfig: a virtio-rng reading `src` (Cloud Hypervisor's default is
// /dev/urandom). Unlike Cloud Hypervisor, which always adds the device,
// skiff adds it only when the config has an rng object (as with --rng).
Result<> parse_rng(const json& j, VmConfig& c) {
  SKIFF_TRY_VOID(check_fields(j, "rng",
                              {{"src", Rule::kHandled, ""},
                               {"id", Rule::kString, ""},
                               {"iommu", Rule::kFalse, "an IOMMU"},
                               {"pci_segment", Rule::kZero, "PCI segments"},
                               {"pci_device_id", Rule::kAbsent, "choosing PCI device ids"}}));
  if (!has(j, "src")) return fail("rng.src: required (an entropy source such as /dev/urandom)");
  RngConfig r;
  r.source = SKIFF_TRY(get_string(j, "rng", "src"));
  if (r.source.empty()) return fail("rng.src: must not be empty");
  c.rng = r;
  return {};
}

// TokenBucket: size and refill_time required, one_time_burst optional.
Result<net::TokenBucketConfig> parse_token_bucket(const json& j, const std::string& path) {
  SKIFF_TRY_VOID(check_fields(j, path,
                              {{"size", Rule::kHandled, ""},
                               {"one_time_burst", Rule::kHandled, ""},
                               {"refill_time", Rule::kHandled, ""}}));
  if (!has(j, "size") || !has(j, "refill_time"))
    return fail("{}: size and refill_time (ms) are required", path);
  constexpr uint64_t kMax = INT64_MAX;  // the schema's int64
  net::TokenBucketConfig b;
  b.size = SKIFF_TRY(get_uint(j, path, "size", 0, kMax));
  b.refill_time_ms = SKIFF_TRY(get_uint(j, path, "refill_time", 0, kMax));
  if (has(j, "one_time_burst"))
    b.one_time_burst = SKIFF_TRY(get_uint(j, path, "one_time_burst", 0, kMax));
  return b;
}

// DiskConfig (one entry of "disks"): an image path, or vhost_user with
// vhost_socket (an external vhost-user-blk back end serves the disk; it
// owns path/readonly/direct/serial then, as with --disk vhost_user=on).
Result<DiskConfig> parse_disk(const json& j, const std::string& path) {
  SKIFF_TRY_VOID(check_fields(j, path,
                              {{"path", Rule::kString, ""},
                               {"readonly", Rule::kBool, ""},
                               {"direct", Rule::kBool, ""},
                               {"num_queues", Rule::kHandled, ""},
                               {"queue_size", Rule::kHandled, ""},
                               {"vhost_user", Rule::kBool, ""},
                               {"vhost_socket", Rule::kString, ""},
                               {"id", Rule::kString, ""},
                               {"serial", Rule::kString, ""},
                               {"iommu", Rule::kFalse, "an IOMMU"},
                               {"rate_limiter_config", Rule::kAbsent, "disk rate limiting"},
                               {"rate_limit_group", Rule::kAbsent, "disk rate limit groups"},
                               {"pci_segment", Rule::kZero, "PCI segments"},
                               {"pci_device_id", Rule::kAbsent, "choosing PCI device ids"},
                               {"queue_affinity", Rule::kEmpty, "queue affinity"},
                               {"backing_files", Rule::kFalse, "qcow2 backing files"},
                               {"sparse", Rule::kTrue, "non-sparse disks"},
                               {"image_type", Rule::kAbsent, "choosing the image type"},
                               {"lock_granularity", Rule::kAbsent, "lock granularity"}}));
  auto flag = [&](const char* key) { return has(j, key) && j.at(key).get<bool>(); };
  DiskConfig d;
  d.path = SKIFF_TRY(get_string(j, path, "path"));
  d.read_only = flag("readonly");
  d.direct = flag("direct");
  d.vhost_user = flag("vhost_user");
  d.vhost_socket = SKIFF_TRY(get_string(j, path, "vhost_socket"));
  d.id = SKIFF_TRY(get_string(j, path, "id"));
  d.serial = SKIFF_TRY(get_string(j, path, "serial"));
  if (d.vhost_user) {
    if (d.vhost_socket.empty())
      return fail("{}.vhost_socket: required with vhost_user (the back end's socket)", path);
    if (!d.path.empty() || d.read_only || d.direct || !d.serial.empty())
      return fail("{}: path, readonly, direct and serial belong to the vhost-user back end", path);
  } else {
    if (!d.vhost_socket.empty()) return fail("{}.vhost_socket: needs vhost_user true", path);
    if (d.path.empty()) return fail("{}.path: required (or vhost_user with vhost_socket)", path);
  }
  if (d.serial.size() > 20) return fail("{}.serial: '{}' is longer than 20 bytes", path, d.serial);
  if (has(j, "num_queues"))
    d.num_queues = static_cast<uint16_t>(SKIFF_TRY(get_uint(j, path, "num_queues", 1, 64)));
  if (has(j, "queue_size")) {
    d.queue_size = static_cast<uint16_t>(SKIFF_TRY(get_uint(j, path, "queue_size", 2, 32768)));
    if ((d.queue_size & (d.queue_size - 1)) != 0)
      return fail("{}.queue_size: {} is not a power of 2", path, d.queue_size);
  }
  return d;
}

// NetConfig (one entry of "net"): a tap by name; the options --net has.
Result<NetConfig> parse_net(const json& j, const std::string& path) {
  SKIFF_TRY_VOID(check_fields(j, path,
                              {{"tap", Rule::kHandled, ""},
                               {"mac", Rule::kHandled, ""},
                               {"num_queues", Rule::kHandled, ""},
                               {"queue_size", Rule::kHandled, ""},
                               {"id", Rule::kHandled, ""},
                               {"rate_limiter_config", Rule::kHandled, ""},
                               {"ip", Rule::kAbsent, "configuring the tap's address (ip)"},
                               {"mask", Rule::kAbsent, "configuring the tap's address (mask)"},
                               {"host_mac", Rule::kAbsent, "setting the tap's MAC (host_mac)"},
                               {"mtu", Rule::kAbsent, "setting the MTU"},
                               {"iommu", Rule::kFalse, "an IOMMU"},
                               {"vhost_user", Rule::kFalse, "vhost-user net front ends"},
                               {"vhost_socket", Rule::kAbsent, "vhost-user net front ends"},
                               {"vhost_mode", Rule::kString, ""},
                               // skiff's own: the kernel's vhost-net data path (--net vhost=on).
                               {"vhost", Rule::kBool, ""},
                               {"pci_segment", Rule::kZero, "PCI segments"},
                               {"pci_device_id", Rule::kAbsent, "choosing PCI device ids"},
                               {"offload_tso", Rule::kTrue, "turning TSO off"},
                               {"offload_ufo", Rule::kTrue, "turning UFO off"},
                               {"offload_csum", Rule::kTrue, "turning checksum offload off"}}));
  NetConfig n;
  n.tap = SKIFF_TRY(get_string(j, path, "tap"));
  // Inherited fds cannot travel in JSON; Cloud Hypervisor would create a tap.
  if (n.tap.empty()) return fail("{}.tap: required (the tap interface's name)", path);
  if (n.tap.size() > 15 || n.tap.find_first_of("/ \t\n:") != std::string::npos)
    return fail(
        "{}.tap: '{}' is not a valid interface name (1-15 characters, no '/', ':' or "
        "spaces)",
        path, n.tap);
  n.mac = SKIFF_TRY(get_string(j, path, "mac"));
  if (!n.mac.empty()) {
    auto mac = net::MacAddress::parse(n.mac);
    if (!mac) return fail("{}.mac: {}", path, mac.error().message);
    if (mac->is_multicast() || *mac == net::MacAddress{})
      return fail("{}.mac: {} is not a unicast address", path, n.mac);
  }
  if (has(j, "num_queues")) {
    // virtio 1.2 §5.1.2: rx/tx queues in pairs; at most 64 pairs, as --net.
    n.num_queues = static_cast<uint16_t>(SKIFF_TRY(get_uint(j, path, "num_queues", 2, 128)));
    if (n.num_queues % 2 != 0)
      return fail("{}.num_queues: {} is odd (rx and tx queues come in pairs)", path, n.num_queues);
  }
  if (has(j, "queue_size")) {
    n.queue_size = static_cast<uint16_t>(SKIFF_TRY(get_uint(j, path, "queue_size", 2, 32768)));
    if ((n.queue_size & (n.queue_size - 1)) != 0)
      return fail("{}.queue_size: {} is not a power of 2", path, n.queue_size);
  }
  n.id = SKIFF_TRY(get_string(j, path, "id"));
  if (has(j, "rate_limiter_config")) {
    const json& rl = j.at("rate_limiter_config");
    std::string where = path + ".rate_limiter_config";
    SKIFF_TRY_VOID(
        check_fields(rl, where, {{"bandwidth", Rule::kHandled, ""}, {"ops", Rule::kHandled, ""}}));
    if (has(rl, "bandwidth"))
      n.rate_limiter.bandwidth =
          SKIFF_TRY(parse_token_bucket(rl.at("bandwidth"), where + ".bandwidth"));
    if (has(rl, "ops"))
      n.rate_limiter.ops = SKIFF_TRY(parse_token_bucket(rl.at("ops"), where + ".ops"));
  }
  if (has(j, "vhost")) n.vhost = j.at("vhost").get<bool>();
  // As --net: the kernel's data path cannot be rate limited.
  if (n.vhost && n.rate_limiter.limits())
    return fail(
        "{}: vhost and rate_limiter_config do not go together (vhost-net moves frames in "
        "the kernel, past any rate limiter); drop one of them",
        path);
  return n;
}

json token_bucket_to_json(const net::TokenBucketConfig& b) {
  return json{
      {"size", b.size}, {"one_time_burst", b.one_time_burst}, {"refill_time", b.refill_time_ms}};
}

}  // namespace

Result<VmConfig> parse_vm_config(const json& j) {
  SKIFF_TRY_VOID(check_fields(j, "VmConfig",
                              {{"cpus", Rule::kHandled, ""},
                               {"memory", Rule::kHandled, ""},
                               {"payload", Rule::kHandled, ""},
                               {"serial", Rule::kHandled, ""},
                               {"console", Rule::kHandled, ""},
                               {"rate_limit_groups", Rule::kEmpty, "rate limit groups"},
                               {"disks", Rule::kHandled, ""},
                               {"net", Rule::kHandled, ""},
                               {"rng", Rule::kHandled, ""},
                               {"balloon", Rule::kHandled, ""},
                               {"fs", Rule::kEmpty, "virtio-fs"},
                               {"generic_vhost_user", Rule::kEmpty, "generic vhost-user devices"},
                               {"pmem", Rule::kEmpty, "virtio-pmem"},
                               {"debug_console", Rule::kHandled, ""},
                               {"devices", Rule::kEmpty, "VFIO devices"},
                               {"user_devices", Rule::kEmpty, "vfio-user devices"},
                               {"vdpa", Rule::kEmpty, "vDPA devices"},
                               {"vsock", Rule::kAbsent, "virtio-vsock"},
                               {"numa", Rule::kHandled, ""},
                               {"iommu", Rule::kFalse, "an IOMMU"},
                               {"watchdog", Rule::kFalse, "a watchdog"},
                               {"rtc", Rule::kAbsent, "RTC configuration"},
                               {"pvpanic", Rule::kFalse, "pvpanic"},
                               {"pci_segments", Rule::kEmpty, "extra PCI segments"},
                               {"platform", Rule::kAbsent, "platform configuration"},
                               {"tpm", Rule::kAbsent, "a TPM"},
                               {"landlock_enable", Rule::kFalse, "Landlock"},
                               {"landlock_rules", Rule::kEmpty, "Landlock rules"}}));
  VmConfig c;
  c.serial = "off";  // the schema's default serial mode is Null
  if (!has(j, "payload")) return fail("VmConfig.payload: required (with payload.kernel)");
  SKIFF_TRY_VOID(parse_payload(j.at("payload"), c));
  if (has(j, "cpus")) SKIFF_TRY_VOID(parse_cpus(j.at("cpus"), c));
  if (has(j, "numa")) {
    const json& nodes = j.at("numa");
    if (!nodes.is_array()) return fail("numa: expected an array, got {}", type_name(nodes));
    for (size_t i = 0; i < nodes.size(); ++i)
      c.numa.push_back(SKIFF_TRY(parse_numa_node(nodes[i], fmt::format("numa[{}]", i))));
  }
  if (has(j, "memory")) SKIFF_TRY_VOID(parse_memory(j.at("memory"), c));
  if (has(j, "serial")) c.serial = SKIFF_TRY(parse_char_mode(j.at("serial"), "serial", false));
  if (has(j, "disks")) {
    const json& disks = j.at("disks");
    if (!disks.is_array()) return fail("disks: expected an array, got {}", type_name(disks));
    for (size_t i = 0; i < disks.size(); ++i)
      c.disks.push_back(SKIFF_TRY(parse_disk(disks[i], fmt::format("disks[{}]", i))));
  }
  if (has(j, "net")) {
    const json& nets = j.at("net");
    if (!nets.is_array()) return fail("net: expected an array, got {}", type_name(nets));
    for (size_t i = 0; i < nets.size(); ++i)
      c.nets.push_back(SKIFF_TRY(parse_net(nets[i], fmt::format("net[{}]", i))));
  }
  if (has(j, "console")) {
    // Off: no virtio-console at all; Null: the device, output discarded.
    std::string backend = SKIFF_TRY(parse_char_mode(j.at("console"), "console", true));
    if (SKIFF_TRY(get_string(j.at("console"), "console", "mode")) != "Off")
      c.console = ConsoleConfig{backend};
  }
  if (c.console && c.console->backend == "tty" && c.serial == "tty")
    return fail(
        "console.mode: Tty and serial.mode Tty cannot share skiff's terminal; put one of them on "
        "Pty, File, Null or Off");
  if (has(j, "balloon")) SKIFF_TRY_VOID(parse_balloon(j.at("balloon"), c));
  if (has(j, "rng")) SKIFF_TRY_VOID(parse_rng(j.at("rng"), c));
  if (has(j, "debug_console")) {
    const json& d = j.at("debug_console");
    SKIFF_TRY_VOID(check_fields(d, "debug_console",
                                {{"mode", Rule::kHandled, ""},
                                 {"file", Rule::kAbsent, "the debug console"},
                                 {"iobase", Rule::kAbsent, "the debug console"}}));
    std::string mode = SKIFF_TRY(get_string(d, "debug_console", "mode"));
    if (mode != "Off")
      return fail("debug_console.mode: the debug console is not supported yet (use Off)");
  }
  return c;
}

Result<VmConfig> parse_vm_config_text(std::string_view body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    // Caught here, on the thread that parses: errors are values above this.
    return fail("malformed JSON: {}", e.what());
  }
  return parse_vm_config(j);
}

// CpusConfig as Cloud Hypervisor reports it (boot/max always, topology and
// affinity when set).
static json cpus_to_json(const VmConfig& c) {
  json cpus{{"boot_vcpus", c.boot_cpus}, {"max_vcpus", c.effective_max_cpus()}};
  if (c.topology)
    cpus["topology"] = {{"threads_per_core", c.topology->threads_per_core},
                        {"cores_per_die", c.topology->cores_per_die},
                        {"dies_per_package", c.topology->dies_per_package},
                        {"packages", c.topology->packages}};
  for (const VcpuAffinity& a : c.affinity)
    cpus["affinity"].push_back({{"vcpu", a.vcpu}, {"host_cpus", a.host_cpus}});
  return cpus;
}

json vm_config_to_json(const VmConfig& c) {
  json payload{{"kernel", c.kernel}};
  if (!c.cmdline.empty()) payload["cmdline"] = c.cmdline;
  if (!c.initramfs.empty()) payload["initramfs"] = c.initramfs;
  json serial;
  if (c.serial == "tty") {
    serial = {{"mode", "Tty"}};
  } else if (c.serial == "pty") {
    serial = {{"mode", "Pty"}};
  } else if (c.serial.starts_with("file=")) {
    serial = {{"mode", "File"}, {"file", c.serial.substr(5)}};
  } else {
    serial = {{"mode", "Null"}};
  }
  json console{{"mode", "Off"}};
  if (c.console) {
    const std::string& b = c.console->backend;
    if (b == "tty")
      console = {{"mode", "Tty"}};
    else if (b == "pty")
      console = {{"mode", "Pty"}};
    else if (b.starts_with("file="))
      console = {{"mode", "File"}, {"file", b.substr(5)}};
    else
      console = {{"mode", "Null"}};
  }
  json out{{"cpus", cpus_to_json(c)},
           {"memory", memory_to_json(c)},
           {"payload", payload},
           {"serial", serial},
           {"console", console}};
  // getrandom(2) (--rng without src) draws from the pool /dev/urandom reads.
  if (c.rng) out["rng"] = {{"src", c.rng->source.empty() ? "/dev/urandom" : c.rng->source}};
  if (c.balloon)
    out["balloon"] = {{"size", c.balloon->size},
                      {"deflate_on_oom", c.balloon->deflate_on_oom},
                      {"free_page_reporting", c.balloon->free_page_reporting}};
  for (const NumaNodeConfig& n : c.numa) {
    json node{{"guest_numa_id", n.guest_numa_id}, {"cpus", n.cpus}};
    if (!n.memory_zones.empty()) node["memory_zones"] = n.memory_zones;
    for (const NumaDistance& d : n.distances)
      node["distances"].push_back({{"destination", d.destination}, {"distance", d.distance}});
    out["numa"].push_back(node);
  }
  for (const DiskConfig& d : c.disks) {
    json disk{{"queue_size", d.queue_size}};
    if (d.vhost_user) {
      disk["vhost_user"] = true;
      disk["vhost_socket"] = d.vhost_socket;
    } else {
      disk["path"] = d.path;
      disk["readonly"] = d.read_only;
      disk["direct"] = d.direct;
    }
    if (d.num_queues != 0) disk["num_queues"] = d.num_queues;
    if (!d.serial.empty()) disk["serial"] = d.serial;
    if (!d.id.empty()) disk["id"] = d.id;
    out["disks"].push_back(disk);
  }
  // Nets from fd=[..] have no tap name and cannot be stated in JSON.
  for (const NetConfig& n : c.nets) {
    if (n.tap.empty()) continue;
    json net{{"tap", n.tap}, {"queue_size", n.queue_size}};
    if (!n.mac.empty()) net["mac"] = n.mac;
    if (n.num_queues != 0) net["num_queues"] = n.num_queues;
    if (!n.id.empty()) net["id"] = n.id;
    if (n.vhost) net["vhost"] = true;
    if (n.rate_limiter.limits()) {
      json rl = json::object();
      if (n.rate_limiter.bandwidth.limits())
        rl["bandwidth"] = token_bucket_to_json(n.rate_limiter.bandwidth);
      if (n.rate_limiter.ops.limits()) rl["ops"] = token_bucket_to_json(n.rate_limiter.ops);
      net["rate_limiter_config"] = rl;
    }
    out["net"].push_back(net);
  }
  return out;
}

}  // namespace skiff::api

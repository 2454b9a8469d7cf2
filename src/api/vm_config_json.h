// Cloud Hypervisor's VmConfig JSON (specs/cloud-hypervisor-api.yaml,
// components/schemas/VmConfig) <-> skiff's VmConfig.
//
// What skiff supports: cpus (boot_vcpus, max_vcpus, topology, affinity),
// memory (size, shared, hugepages, hugepage_size, mergeable, prefault, thp,
// zones incl. file), payload.kernel/initramfs/cmdline, serial (Off, Null,
// Tty, Pty, File), console (Off, Null, Tty, Pty, File), disks, net, rng,
// balloon and numa. Every other field of the schema is accepted only at its
// schema default (false, 0, empty list, absent): a value that would need a
// device or feature skiff does not have yet (vsock, virtio-fs, VFIO, ...)
// is refused with "... is not supported yet", never silently ignored. A field the schema does not have is
// "unknown field". Every message names the field by its JSON path.
//
// Serial modes map to skiff's --serial values: Tty -> tty, Pty -> pty,
// File -> file=PATH, and Off and Null both -> off (skiff's "off" keeps the
// UART and discards its output, which is Cloud Hypervisor's Null); the
// reverse mapping reports "off" as Null.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "vmm/config.h"

namespace skiff::api {

// Largest memory.size accepted before asking the host (64 TiB): anything
// above is an impossible value, not a host error.
inline constexpr uint64_t kMaxMemory = uint64_t{64} << 40;

[[nodiscard]] Result<VmConfig> parse_vm_config(const nlohmann::json& j);

// Parses the request body text first; syntax errors name the byte offset.
[[nodiscard]] Result<VmConfig> parse_vm_config_text(std::string_view body);

[[nodiscard]] nlohmann::json vm_config_to_json(const VmConfig& config);

}  // namespace skiff::api

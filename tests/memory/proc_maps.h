// Reading the kernel's view of this process's mappings (/proc/self/smaps,
// numa_maps), so tests check what the host really did, not what skiff asked.
#pragma once

#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

namespace skiff::test {

// The smaps (or numa_maps) entry of the mapping that contains addr: its
// header line and, for smaps, the field lines that follow it.
inline std::optional<std::string> proc_entry(const std::string& file, const void* addr) {
  auto a = reinterpret_cast<uintptr_t>(addr);
  std::ifstream in("/proc/self/" + file);
  std::string line, entry;
  bool inside = false;
  while (std::getline(in, line)) {
    // A header line starts with "start-end " (smaps) or "start " (numa_maps).
    size_t sp = line.find(' ');
    std::string first = line.substr(0, sp);
    bool header = !first.empty() && first.find(':') == std::string::npos &&
                  first.find_first_not_of("0123456789abcdef-") == std::string::npos;
    if (header) {
      if (inside) return entry;
      size_t dash = first.find('-');
      uint64_t start = std::stoull(first.substr(0, dash), nullptr, 16);
      uint64_t end =
          dash == std::string::npos ? start + 1 : std::stoull(first.substr(dash + 1), nullptr, 16);
      inside = a >= start && a < end;
      entry.clear();
    }
    if (inside) entry += line + "\n";
  }
  if (inside) return entry;
  return std::nullopt;
}

// A "Name:   N kB" field of an smaps entry, in bytes.
inline uint64_t smaps_kb_field(const std::string& entry, const std::string& name) {
  std::istringstream in(entry);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + ":", 0) == 0) return std::stoull(line.substr(name.size() + 1)) * 1024;
  }
  return 0;
}

// The VmFlags line of an smaps entry, with spaces around each flag.
inline std::string smaps_vm_flags(const std::string& entry) {
  size_t p = entry.find("VmFlags:");
  if (p == std::string::npos) return "";
  size_t e = entry.find('\n', p);
  return entry.substr(p + 8, e - p - 8) + " ";
}

}  // namespace skiff::test

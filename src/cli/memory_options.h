// --memory and --memory-zone (Cloud Hypervisor's syntax) into
// VmConfig::memory_size and VmConfig::memory.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "vmm/config.h"

namespace skiff::cli {

// --memory size=SIZE[,shared=on][,hugepages=on][,hugepage_size=2M|1G]
//          [,mergeable=on][,prefault=on][,host_numa_node=N][,thp=on|off]
// --memory-zone id=ID,size=SIZE[,file=PATH][,shared=on][,hugepages=on]
//          [,hugepage_size=..][,mergeable=on][,prefault=on][,host_numa_node=N]
//          (repeatable; file=: memory/ram_file.h, checked against the host
//          here so a bad path is a usage error)
// With zones, guest RAM is the zones in the order given and --memory may
// only say size=0 and thp=.. (memory_given: --memory was on the command
// line; without it `memory` holds the default and is ignored for zones).
[[nodiscard]] Result<> parse_memory(const std::string& memory, bool memory_given,
                                    const std::vector<std::string>& zones, VmConfig& vm);

}  // namespace skiff::cli

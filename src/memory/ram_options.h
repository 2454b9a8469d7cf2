// RamOptions: how one piece of guest RAM is backed on the host
// (--memory / --memory-zone, Cloud Hypervisor's option names). GuestRam
// turns them into mmap/memfd/madvise/mbind calls (guest_ram.cc).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace skiff {

inline constexpr uint64_t kHugePage2M = 2ull << 20;
inline constexpr uint64_t kHugePage1G = 1ull << 30;

// Transparent huge pages for private or memfd RAM (ignored for hugetlb RAM).
enum class Thp : uint8_t {
  kDefault,  // the host's /sys/kernel/mm/transparent_hugepage policy
  kOn,       // MADV_HUGEPAGE
  kOff,      // MADV_NOHUGEPAGE
};

struct RamOptions {
  // memfd backing, mapped MAP_SHARED: the fd can be handed to vhost-user
  // back ends (and later snapshot/migration). With `file`: the file is
  // mapped MAP_SHARED (guest writes reach it) instead of MAP_PRIVATE.
  bool shared = false;
  // --memory-zone file=PATH (Cloud Hypervisor's MemoryZoneConfig.file): a
  // regular file mapped as the zone's RAM, or a directory (a hugetlbfs or
  // tmpfs mount) to create an unlinked file in (memory/ram_file.h).
  // Empty: anonymous memory or a memfd.
  std::string file;
  // memfd with MFD_HUGETLB from the host's pre-reserved pool; implies shared.
  bool hugepages = false;
  uint64_t hugepage_size = kHugePage2M;  // kHugePage2M or kHugePage1G
  bool mergeable = false;                // MADV_MERGEABLE (KSM)
  bool prefault = false;                 // populate every page before the guest runs
  Thp thp = Thp::kDefault;
  std::optional<uint32_t> host_numa_node;  // mbind(MPOL_BIND) to this node

  // The granule every size and file offset of this RAM must be a multiple of
  // (for `file`, the file system's page size may be larger: RamFileInfo).
  [[nodiscard]] uint64_t page_size() const { return hugepages ? hugepage_size : 4096; }
};

}  // namespace skiff

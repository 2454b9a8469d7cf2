// GuestRam owns the host mappings that back guest RAM and hands out the
// GuestMemory view of them. RAM comes in zones (--memory, --memory-zone),
// each with its own backing (RamOptions):
//   - private anonymous memory with MAP_NORESERVE (the default), so a 4 GiB
//     guest costs only the pages it touches;
//   - a memfd mapped MAP_SHARED (shared=on), whose fd and offsets are in
//     MemoryRegion::fd / fd_offset for vhost-user back ends;
//   - a hugetlb memfd (hugepages=on) from the host's reserved pool, checked
//     before anything is mapped so a short pool is refused with a message
//     instead of a SIGBUS later.
//   - a file (file=PATH, memory/ram_file.h): a regular file or an unlinked
//     temporary file in a directory (hugetlbfs, tmpfs), MAP_SHARED with
//     shared=on (fd exported like a memfd), MAP_PRIVATE otherwise.
// A zone's ranges (one, or two when it straddles the 32-bit hole) are views of
// the same backing at increasing file offsets.
//
// Zones that follow each other in guest physical space follow each other in
// host space too: each guest-contiguous run of RAM is one host address range,
// reserved up front (PROT_NONE) and aligned so host and guest addresses agree
// modulo the largest page size in the run (at least 2 MiB, for THP and
// hugetlb), and every zone's piece is mapped into it with MAP_FIXED. So a
// guest buffer across a zone boundary is one host span (GuestMemory::slice).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "memory/guest_memory.h"
#include "memory/ram_file.h"
#include "memory/ram_options.h"
#include "memory/reserved_runs.h"

namespace skiff {

struct RamRange {
  uint64_t gpa;
  uint64_t size;
};

// One piece of RAM with one host backing.
struct RamZone {
  std::string name;  // the --memory-zone id ("" for plain --memory); used in messages
  std::vector<RamRange> ranges;
  RamOptions options;
};

class GuestRam {
 public:
  [[nodiscard]] static Result<GuestRam> create(std::span<const RamZone> zones);
  // Private anonymous RAM over the given ranges.
  [[nodiscard]] static Result<GuestRam> create(std::span<const RamRange> ranges);
  GuestRam() = default;
  ~GuestRam();
  GuestRam(GuestRam&& o) noexcept;
  GuestRam& operator=(GuestRam&& o) noexcept;
  GuestRam(const GuestRam&) = delete;
  GuestRam& operator=(const GuestRam&) = delete;

  [[nodiscard]] const GuestMemory& memory() const { return memory_; }
  // Drops every page (contents read as zero again, RSS released); used on
  // reboot. Prefaulted and hugetlb zones are populated again (hugetlb: so
  // the pages stay reserved for this guest). A file= zone mapped private
  // reads the file's contents again; the user's file mapped shared=on is
  // left as it is (its contents are the user's, as with Cloud Hypervisor).
  void discard_all();

 private:
  struct Mapping {
    MemoryRegion region;
    bool prefault = false;         // populate again after discard_all (prefault=on, hugetlb)
    bool discard_on_reset = true;  // false: the user's file=, shared=on (kept over reboots)
  };
  [[nodiscard]] Result<> map_zone(const RamZone& zone, const std::optional<RamFileInfo>& file);
  void unmap_all();

  ReservedRuns reserved_;  // releasing these unmaps every zone's pieces
  std::vector<Mapping> maps_;
  std::vector<Fd> fds_;  // one per memfd/file zone; MemoryRegion::fd points into these
  GuestMemory memory_;
};

}  // namespace skiff

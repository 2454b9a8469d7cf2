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
#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "memory/guest_memory.h"
#include "memory/ram_options.h"

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
  // the pages stay reserved for this guest).
  void discard_all();

 private:
  struct Mapping {
    MemoryRegion region;
    bool prefault = false;  // populate again after discard_all (prefault=on, hugetlb)
  };
  // A guest-contiguous run of RAM and the host range reserved for it.
  struct Reservation {
    uint64_t gpa = 0;
    uint64_t size = 0;
    uint8_t* host = nullptr;
  };
  [[nodiscard]] Result<> reserve_runs(std::span<const RamZone> zones);
  [[nodiscard]] Result<> map_zone(const RamZone& zone);
  [[nodiscard]] uint8_t* reserved_host(uint64_t gpa, uint64_t size) const;
  void unmap_all();

  std::vector<Reservation> reserved_;  // munmap of these releases every zone's pieces
  std::vector<Mapping> maps_;
  std::vector<Fd> fds_;  // one per shared zone; MemoryRegion::fd points into these
  GuestMemory memory_;
};

}  // namespace skiff

// ReservedRuns: one host address range per guest-contiguous run of RAM, so
// pieces with different backings that follow each other in guest physical
// space follow each other in host space too, and a guest buffer across the
// boundary is one host span (GuestMemory merges such regions).
//
// Each run is reserved up front (PROT_NONE, MAP_NORESERVE: no memory, no
// commit charge), aligned so host and guest addresses agree modulo the
// largest page size in the run (at least 2 MiB: KVM can then back a guest
// huge page with a host one, THP or hugetlb, and a hugetlb file can be
// MAP_FIXED at its page boundary). Each piece's backing is then mapped over
// its place with MAP_FIXED. Destruction unmaps every run, which releases
// the pieces mapped into it too.
//
// Used by GuestRam (skiff's own RAM) and by skiff-vhost's MemoryTable (a
// front end's regions).
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"

namespace skiff {

class ReservedRuns {
 public:
  struct Piece {
    uint64_t gpa = 0;
    uint64_t size = 0;
    uint64_t page = 4096;  // the backing's page size; a power of two
  };

  // Reserves host space for `pieces` (any order): each must be non-empty,
  // not wrap around, and not overlap another (checked here: MAP_FIXED of
  // one piece over another's would silently replace it).
  [[nodiscard]] static Result<ReservedRuns> reserve(std::vector<Piece> pieces);

  ReservedRuns() = default;
  ~ReservedRuns();
  ReservedRuns(ReservedRuns&& o) noexcept;
  ReservedRuns& operator=(ReservedRuns&& o) noexcept;
  ReservedRuns(const ReservedRuns&) = delete;
  ReservedRuns& operator=(const ReservedRuns&) = delete;

  // Host address of guest [gpa, gpa + size) if it lies within one run.
  [[nodiscard]] uint8_t* host(uint64_t gpa, uint64_t size) const;

  // mmap(MAP_FIXED | flags) of `size` bytes of `fd` at `offset` (fd < 0:
  // anonymous memory) over guest [gpa, gpa + size), which must lie within
  // one run. On failure the placeholder is put back, so nothing else can
  // land inside the reservation before it is released.
  [[nodiscard]] Result<uint8_t*> map(uint64_t gpa, uint64_t size, int prot, int flags, int fd,
                                     uint64_t offset);

  // Unmaps every run (and all pieces mapped into them).
  void release();

 private:
  struct Run {
    uint64_t gpa = 0;
    uint64_t size = 0;
    uint8_t* host = nullptr;
  };
  std::vector<Run> runs_;
};

}  // namespace skiff

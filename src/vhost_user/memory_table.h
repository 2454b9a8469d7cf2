// MemoryTable: the front end's guest RAM as the back end sees it, built
// from one SET_MEM_TABLE message (specs/vhost-user.rst "Memory regions
// description", "VHOST_USER_SET_MEM_TABLE").
//
// Each region arrives as (guest_phys_addr, memory_size, userspace_addr,
// mmap_offset) plus an fd; the region's bytes are the fd's bytes at
// [mmap_offset, mmap_offset + memory_size). Every value is front-end
// controlled and checked before use: region count, sizes (non-zero, no
// overflow, inside the fd's file size so an access cannot hit SIGBUS past
// the end of a too-small memfd), overlaps in guest and user address space.
// The mappings are owned here (munmap on destruction) and exposed only as a
// GuestMemory, so device accesses stay bounds-checked (STYLE.md §1).
//
// Regions that follow each other in guest-physical space (two memory
// backends or zones back to back) are mapped back to back in one reserved
// host range, so a guest buffer across the boundary is accepted like in
// skiff's own GuestRam; a region that is not page-aligned in guest space
// or in its file is mapped on its own (and a range cannot cross into it).
//
// Ring addresses in SET_VRING_ADDR are the front end's user-space
// addresses; user_to_guest() translates them through this table
// ("Note that a ring address is ... a user address").
//
// Known limit, shared by every vhost-user back end: a front end that
// shrinks a memfd after sending it can still make an access fault.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "memory/guest_memory.h"
#include "memory/reserved_runs.h"
#include "vhost_user/protocol.h"

namespace skiff::vhost_user {

class MemoryTable {
 public:
  // Maps `regions` (one fd per region, same order). `max_regions` is what
  // the back end advertises.
  [[nodiscard]] static Result<MemoryTable> map(std::span<const MemoryRegionDesc> regions,
                                               std::span<Fd> fds,
                                               uint32_t max_regions = kMaxMemRegions);
  MemoryTable() = default;
  ~MemoryTable();
  MemoryTable(MemoryTable&& o) noexcept;
  MemoryTable& operator=(MemoryTable&& o) noexcept;
  MemoryTable(const MemoryTable&) = delete;
  MemoryTable& operator=(const MemoryTable&) = delete;

  [[nodiscard]] const GuestMemory& memory() const { return memory_; }
  [[nodiscard]] bool empty() const { return regions_.empty(); }

  // The guest-physical address of front-end user address `uaddr`, if it
  // lies inside a region.
  [[nodiscard]] Result<uint64_t> user_to_guest(uint64_t uaddr) const;

 private:
  struct Mapping {
    void* base = nullptr;
    size_t length = 0;
  };
  void unmap_all();

  std::vector<MemoryRegionDesc> regions_;
  ReservedRuns runs_;              // guest-contiguous regions, back to back
  std::vector<Mapping> mappings_;  // regions not page-aligned, each on its own
  GuestMemory memory_;
};

}  // namespace skiff::vhost_user

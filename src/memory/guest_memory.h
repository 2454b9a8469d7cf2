// GuestMemory: the one door into guest memory (STYLE.md §1). Every guest
// physical address that skiff touches is turned into host bytes here, after
// checking that the whole range [gpa, gpa + len) is RAM and that gpa + len
// does not overflow. Nothing else does pointer arithmetic on guest addresses.
//
// A range may cross from one region into the next only where the two are
// contiguous in guest AND host address space (GuestRam lays memory zones out
// that way, so a guest buffer at a zone boundary stays one host span);
// anything else is refused. regions() stays one entry per backing: KVM
// memory slots, vhost-user memory tables and discard() need each backing's
// own fd and offset.
//
// GuestMemory does not own the host mappings (GuestRam does); it is a cheap
// view that unit tests build over plain buffers.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include "base/result.h"

namespace skiff {

struct MemoryRegion {
  uint64_t gpa = 0;         // guest physical start
  uint64_t size = 0;        // bytes
  uint8_t* host = nullptr;  // host address of gpa
  // Shared backing (memfd / hugetlbfs, --memory shared=on or hugepages=on,
  // --memory-zone file=PATH,shared=on):
  // the file that holds the region and the offset of gpa in it, so a
  // vhost-user front end can pass it on and a balloon can punch holes.
  // -1: private anonymous memory.
  int fd = -1;
  uint64_t fd_offset = 0;
};

class GuestMemory {
 public:
  GuestMemory() = default;

  // Regions must be non-empty and must not overlap in guest space.
  [[nodiscard]] static Result<GuestMemory> create(std::vector<MemoryRegion> regions);

  // Host bytes for [gpa, gpa + len); the range must lie within one region
  // or a run of guest- and host-contiguous regions. len == 0 is allowed and
  // yields an empty span if gpa is inside RAM or at a region's end.
  [[nodiscard]] Result<std::span<uint8_t>> slice(uint64_t gpa, uint64_t len) const;

  [[nodiscard]] Result<> read(uint64_t gpa, std::span<uint8_t> out) const;
  [[nodiscard]] Result<> write(uint64_t gpa, std::span<const uint8_t> in) const;

  template <typename T>
  [[nodiscard]] Result<T> read_obj(uint64_t gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    auto r = read(gpa, std::span(reinterpret_cast<uint8_t*>(&v), sizeof v));
    if (!r) return std::unexpected(r.error());
    return v;
  }

  template <typename T>
  [[nodiscard]] Result<> write_obj(uint64_t gpa, const T& v) const {
    static_assert(std::is_trivially_copyable_v<T>);
    return write(gpa, std::span(reinterpret_cast<const uint8_t*>(&v), sizeof v));
  }

  // True if [gpa, gpa + len) is RAM (same check as slice, without the error).
  [[nodiscard]] bool contains(uint64_t gpa, uint64_t len) const;

  // Gives the host memory behind [gpa, gpa + len) back to the host (the
  // balloon, virtio 1.2 §5.5.6): the range must lie in one region and be
  // aligned to its page_size(). The guest reads zeros there afterwards; the pages fault
  // back in on the next access. Private regions: madvise(MADV_DONTNEED);
  // shared ones (fd >= 0): fallocate(PUNCH_HOLE) on the file, which frees
  // the pages of every mapping (MADV_DONTNEED would only unmap them here).
  [[nodiscard]] Result<> discard(uint64_t gpa, uint64_t len) const;
  // The guest address of host bytes inside a region (the inverse of
  // slice, for devices that are handed checked spans); nothing if the span
  // is not inside one region or contiguous run.
  [[nodiscard]] std::optional<uint64_t> gpa_of(std::span<const uint8_t> host) const;
  // The host page size behind gpa: the huge page size (2 MiB or 1 GiB) for
  // hugetlbfs backing, else 4 KiB; 0 if gpa is not RAM. The granule
  // discard() can free.
  [[nodiscard]] uint64_t page_size(uint64_t gpa) const;

  [[nodiscard]] std::span<const MemoryRegion> regions() const { return regions_; }
  [[nodiscard]] uint64_t total_size() const;

 private:
  // A run of regions that are contiguous in guest and host space: what
  // slice/read/write/contains/gpa_of accept a range within.
  struct Span {
    uint64_t gpa = 0;
    uint64_t size = 0;
    uint8_t* host = nullptr;
  };

  explicit GuestMemory(std::vector<MemoryRegion> r, std::vector<Span> spans,
                       std::vector<uint64_t> page_sizes)
      : regions_(std::move(r)), spans_(std::move(spans)), page_sizes_(std::move(page_sizes)) {}
  // The one region (for discard/page_size) or span (for access) holding
  // all of [gpa, gpa + len); nullptr if none.
  const MemoryRegion* find_region(uint64_t gpa, uint64_t len) const;
  const Span* find_span(uint64_t gpa, uint64_t len) const;

  std::vector<MemoryRegion> regions_;  // sorted by gpa
  std::vector<Span> spans_;            // sorted by gpa; regions_ merged where contiguous
  std::vector<uint64_t> page_sizes_;   // per region, fstat() once at create()
};

}  // namespace skiff

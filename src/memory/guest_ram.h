// GuestRam owns the host mappings that back guest RAM and hands out the
// GuestMemory view of them. Today: anonymous private memory with
// MAP_NORESERVE, so a 4 GiB guest costs only the pages it touches.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "memory/guest_memory.h"

namespace skiff {

struct RamRange {
  uint64_t gpa;
  uint64_t size;
};

class GuestRam {
 public:
  [[nodiscard]] static Result<GuestRam> create(std::span<const RamRange> ranges);
  GuestRam() = default;
  ~GuestRam();
  GuestRam(GuestRam&& o) noexcept;
  GuestRam& operator=(GuestRam&& o) noexcept;
  GuestRam(const GuestRam&) = delete;
  GuestRam& operator=(const GuestRam&) = delete;

  [[nodiscard]] const GuestMemory& memory() const { return memory_; }
  // Drops every page (contents read as zero again, RSS released); used on reboot.
  void discard_all();

 private:
  void unmap_all();
  std::vector<MemoryRegion> maps_;
  GuestMemory memory_;
};

}  // namespace skiff

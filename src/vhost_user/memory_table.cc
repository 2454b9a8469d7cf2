#include "vhost_user/memory_table.h"

#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

namespace skiff::vhost_user {

namespace {

bool add_overflows(uint64_t a, uint64_t b) {
  uint64_t sum;
  return __builtin_add_overflow(a, b, &sum);
}

// Half-open ranges [a, a+alen) and [b, b+blen) overlap (no overflow: checked).
bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
  return a < b + blen && b < a + alen;
}

}  // namespace

Result<MemoryTable> MemoryTable::map(std::span<const MemoryRegionDesc> regions, std::span<Fd> fds,
                                     uint32_t max_regions) {
  if (regions.empty()) return fail("memory table has no regions");
  if (regions.size() > max_regions)
    return fail("memory table has {} regions, at most {} are supported", regions.size(),
                max_regions);
  if (fds.size() != regions.size())
    return fail("memory table has {} regions but {} file descriptors", regions.size(), fds.size());

  for (size_t i = 0; i < regions.size(); ++i) {
    const auto& r = regions[i];
    if (r.memory_size == 0) return fail("memory region {} is empty", i);
    if (add_overflows(r.guest_phys_addr, r.memory_size) ||
        add_overflows(r.userspace_addr, r.memory_size) ||
        add_overflows(r.mmap_offset, r.memory_size))
      return fail("memory region {} (gpa {:#x}, user {:#x}, offset {:#x}, size {:#x}) wraps around",
                  i, r.guest_phys_addr, r.userspace_addr, r.mmap_offset, r.memory_size);
    for (size_t j = 0; j < i; ++j) {
      const auto& o = regions[j];
      if (overlaps(r.guest_phys_addr, r.memory_size, o.guest_phys_addr, o.memory_size))
        return fail("memory regions {} and {} overlap in guest-physical space", j, i);
      if (overlaps(r.userspace_addr, r.memory_size, o.userspace_addr, o.memory_size))
        return fail("memory regions {} and {} overlap in front-end address space", j, i);
    }
  }

  // Per region: the file's facts, checked, and whether it can be placed in a
  // guest-contiguous host run (page-aligned in guest space and in its file).
  const uint64_t sys_page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  std::vector<uint64_t> pages(regions.size(), sys_page);
  std::vector<bool> in_run(regions.size(), false);
  std::vector<ReservedRuns::Piece> pieces;
  for (size_t i = 0; i < regions.size(); ++i) {
    const auto& r = regions[i];
    struct stat st {};
    if (::fstat(fds[i].get(), &st) != 0) return fail_errno("fstat of memory region {} fd", i);
    if (!S_ISREG(st.st_mode))
      return fail("memory region {} fd is not a shared-memory file (memfd, shm, hugetlbfs)", i);
    // Mapping past the end of the file would turn an access into SIGBUS.
    if (static_cast<uint64_t>(st.st_size) < r.mmap_offset + r.memory_size)
      return fail("memory region {} needs bytes [{:#x}, {:#x}) of its fd, which has {:#x}", i,
                  r.mmap_offset, r.mmap_offset + r.memory_size, st.st_size);
    // A hugetlbfs file maps only at huge page boundaries.
    struct statfs fs {};
    if (::fstatfs(fds[i].get(), &fs) == 0 && static_cast<uint64_t>(fs.f_type) == HUGETLBFS_MAGIC &&
        fs.f_bsize > 0)
      pages[i] = static_cast<uint64_t>(fs.f_bsize);
    uint64_t page = pages[i];
    in_run[i] =
        r.guest_phys_addr % page == 0 && r.memory_size % page == 0 && r.mmap_offset % page == 0;
    if (in_run[i]) pieces.push_back({r.guest_phys_addr, r.memory_size, page});
  }

  // Regions adjacent in guest space are mapped back to back in one reserved
  // host range (memory/reserved_runs.h, as skiff's own GuestRam does), so a
  // buffer across their boundary is one host span and GuestMemory accepts
  // it; anything else is still refused.
  MemoryTable t;
  t.runs_ = SKIFF_TRY(ReservedRuns::reserve(std::move(pieces)));
  std::vector<MemoryRegion> views;
  for (size_t i = 0; i < regions.size(); ++i) {
    const auto& r = regions[i];
    if (in_run[i]) {
      auto host = t.runs_.map(r.guest_phys_addr, r.memory_size, PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_NORESERVE, fds[i].get(), r.mmap_offset);
      if (!host)
        return fail("mapping memory region {} ({:#x} bytes at fd offset {:#x}): {}", i,
                    r.memory_size, r.mmap_offset, host.error().what());
      views.push_back({r.guest_phys_addr, r.memory_size, *host});
      continue;
    }
    // Not page-aligned: a mapping of its own (mmap needs a page-aligned
    // offset; map from the page below).
    uint64_t aligned = r.mmap_offset & ~(pages[i] - 1);
    uint64_t slack = r.mmap_offset - aligned;
    if (add_overflows(r.memory_size, slack) || r.memory_size + slack > SIZE_MAX)
      return fail("memory region {} is too large to map", i);
    size_t length = static_cast<size_t>(r.memory_size + slack);
    void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                        fds[i].get(), static_cast<off_t>(aligned));
    if (base == MAP_FAILED)
      return fail_errno("mapping memory region {} ({:#x} bytes at fd offset {:#x})", i,
                        r.memory_size, r.mmap_offset);
    t.mappings_.push_back({base, length});
    views.push_back({r.guest_phys_addr, r.memory_size, static_cast<uint8_t*>(base) + slack});
  }
  t.memory_ = SKIFF_TRY(GuestMemory::create(std::move(views)));
  t.regions_.assign(regions.begin(), regions.end());
  // The fds are not needed once mapped (the mapping keeps the memory).
  return t;
}

MemoryTable::~MemoryTable() {
  unmap_all();
}

MemoryTable::MemoryTable(MemoryTable&& o) noexcept
    : regions_(std::move(o.regions_)),
      runs_(std::move(o.runs_)),
      mappings_(std::exchange(o.mappings_, {})),
      memory_(std::move(o.memory_)) {}

MemoryTable& MemoryTable::operator=(MemoryTable&& o) noexcept {
  if (this != &o) {
    unmap_all();
    regions_ = std::move(o.regions_);
    runs_ = std::move(o.runs_);
    mappings_ = std::exchange(o.mappings_, {});
    memory_ = std::move(o.memory_);
  }
  return *this;
}

void MemoryTable::unmap_all() {
  for (auto& m : mappings_) ::munmap(m.base, m.length);
  mappings_.clear();
  runs_.release();
  regions_.clear();
  memory_ = GuestMemory();
}

Result<uint64_t> MemoryTable::user_to_guest(uint64_t uaddr) const {
  for (const auto& r : regions_) {
    if (uaddr >= r.userspace_addr && uaddr - r.userspace_addr < r.memory_size)
      return r.guest_phys_addr + (uaddr - r.userspace_addr);
  }
  return fail("front-end address {:#x} is not in any memory region", uaddr);
}

}  // namespace skiff::vhost_user

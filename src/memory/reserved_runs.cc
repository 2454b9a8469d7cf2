#include "memory/reserved_runs.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "memory/ram_backing.h"
#include "memory/ram_options.h"

namespace skiff {

Result<ReservedRuns> ReservedRuns::reserve(std::vector<Piece> pieces) {
  for (const auto& p : pieces) {
    if (p.size == 0 || p.gpa + p.size < p.gpa)
      return fail("guest range [{:#x}, +{:#x}) is empty or wraps around", p.gpa, p.size);
    if (p.page == 0 || (p.page & (p.page - 1)) != 0)
      return fail("guest range [{:#x}, +{:#x}): page size {:#x} is not a power of two", p.gpa,
                  p.size, p.page);
  }
  std::sort(pieces.begin(), pieces.end(), [](auto& a, auto& b) { return a.gpa < b.gpa; });
  for (size_t i = 1; i < pieces.size(); ++i)
    if (pieces[i - 1].gpa + pieces[i - 1].size > pieces[i].gpa)
      return fail("guest RAM ranges at {:#x} and {:#x} overlap", pieces[i - 1].gpa, pieces[i].gpa);
  ReservedRuns out;
  for (size_t i = 0; i < pieces.size();) {
    Run run{pieces[i].gpa, 0, nullptr};
    uint64_t align = kHugePage2M;
    size_t j = i;
    for (; j < pieces.size() && pieces[j].gpa == run.gpa + run.size; ++j) {
      run.size += pieces[j].size;
      align = std::max(align, pieces[j].page);
    }
    i = j;
    // On failure `out` unmaps the runs reserved so far.
    run.host = SKIFF_TRY(reserve_address_space(run.size, align, run.gpa % align));
    out.runs_.push_back(run);
  }
  return out;
}

ReservedRuns::~ReservedRuns() {
  release();
}

ReservedRuns::ReservedRuns(ReservedRuns&& o) noexcept : runs_(std::exchange(o.runs_, {})) {}

ReservedRuns& ReservedRuns::operator=(ReservedRuns&& o) noexcept {
  if (this != &o) {
    release();
    runs_ = std::exchange(o.runs_, {});
  }
  return *this;
}

void ReservedRuns::release() {
  for (const auto& r : runs_) ::munmap(r.host, r.size);
  runs_.clear();
}

uint8_t* ReservedRuns::host(uint64_t gpa, uint64_t size) const {
  for (const auto& r : runs_)
    if (gpa >= r.gpa && gpa - r.gpa <= r.size && size <= r.size - (gpa - r.gpa))
      return r.host + (gpa - r.gpa);
  return nullptr;
}

Result<uint8_t*> ReservedRuns::map(uint64_t gpa, uint64_t size, int prot, int flags, int fd,
                                   uint64_t offset) {
  uint8_t* at = host(gpa, size);
  if (at == nullptr) return fail("guest range [{:#x}, +{:#x}) has no host reservation", gpa, size);
  if (fd < 0) flags |= MAP_ANONYMOUS;
  void* p = ::mmap(at, size, prot, flags | MAP_FIXED, fd, fd < 0 ? 0 : static_cast<off_t>(offset));
  if (p == MAP_FAILED) {
    int err = errno;
    // A failed MAP_FIXED may already have unmapped the placeholder.
    (void)::mmap(at, size, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
                 0);
    errno = err;
    return fail_errno("cannot map {:#x} bytes at guest {:#x}", size, gpa);
  }
  return static_cast<uint8_t*>(p);
}

}  // namespace skiff

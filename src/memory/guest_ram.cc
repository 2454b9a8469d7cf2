#include "memory/guest_ram.h"

#include <sys/mman.h>

#include <utility>

namespace skiff {

Result<GuestRam> GuestRam::create(std::span<const RamRange> ranges) {
  GuestRam ram;
  for (const auto& r : ranges) {
    void* p = ::mmap(nullptr, r.size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
      return fail_errno("cannot map {} MiB of guest RAM at {:#x}", r.size >> 20, r.gpa);
    ram.maps_.push_back({r.gpa, r.size, static_cast<uint8_t*>(p)});
  }
  ram.memory_ = SKIFF_TRY(GuestMemory::create(ram.maps_));
  return ram;
}

GuestRam::~GuestRam() { unmap_all(); }

GuestRam::GuestRam(GuestRam&& o) noexcept
    : maps_(std::exchange(o.maps_, {})), memory_(std::exchange(o.memory_, {})) {}

GuestRam& GuestRam::operator=(GuestRam&& o) noexcept {
  if (this != &o) {
    unmap_all();
    maps_ = std::exchange(o.maps_, {});
    memory_ = std::exchange(o.memory_, {});
  }
  return *this;
}

void GuestRam::unmap_all() {
  for (const auto& m : maps_) ::munmap(m.host, m.size);
  maps_.clear();
}

void GuestRam::discard_all() {
  for (const auto& m : maps_) ::madvise(m.host, m.size, MADV_DONTNEED);
}

}  // namespace skiff

#include "memory/guest_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>

namespace skiff {

Result<GuestMemory> GuestMemory::create(std::vector<MemoryRegion> regions) {
  std::sort(regions.begin(), regions.end(),
            [](const MemoryRegion& a, const MemoryRegion& b) { return a.gpa < b.gpa; });
  for (size_t i = 0; i < regions.size(); ++i) {
    const auto& r = regions[i];
    if (r.size == 0 || r.host == nullptr) return fail("memory region at {:#x} is empty", r.gpa);
    if (r.gpa + r.size < r.gpa) return fail("memory region at {:#x} wraps around", r.gpa);
    if (i > 0 && regions[i - 1].gpa + regions[i - 1].size > r.gpa)
      return fail("memory regions at {:#x} and {:#x} overlap", regions[i - 1].gpa, r.gpa);
  }
  std::vector<uint64_t> page_sizes;
  for (const auto& r : regions) {
    uint64_t size = 4096;
    struct stat st {};
    if (r.fd >= 0 && ::fstat(r.fd, &st) == 0 && st.st_blksize > 4096)
      size = static_cast<uint64_t>(st.st_blksize);  // hugetlbfs: the huge page size
    page_sizes.push_back(size);
  }
  return GuestMemory(std::move(regions), std::move(page_sizes));
}

const MemoryRegion* GuestMemory::find(uint64_t gpa, uint64_t len) const {
  uint64_t end = gpa + len;
  if (end < gpa) return nullptr;  // overflow
  // Few regions (2-8): a linear scan beats a binary search here.
  for (const auto& r : regions_) {
    if (gpa >= r.gpa && end <= r.gpa + r.size && gpa - r.gpa <= r.size) return &r;
  }
  return nullptr;
}

bool GuestMemory::contains(uint64_t gpa, uint64_t len) const { return find(gpa, len) != nullptr; }

Result<std::span<uint8_t>> GuestMemory::slice(uint64_t gpa, uint64_t len) const {
  const MemoryRegion* r = find(gpa, len);
  if (r == nullptr) return fail("guest range [{:#x}, +{:#x}) is not RAM", gpa, len);
  return std::span<uint8_t>(r->host + (gpa - r->gpa), static_cast<size_t>(len));
}

Result<> GuestMemory::read(uint64_t gpa, std::span<uint8_t> out) const {
  auto s = SKIFF_TRY(slice(gpa, out.size()));
  if (!out.empty()) std::memcpy(out.data(), s.data(), out.size());
  return {};
}

Result<> GuestMemory::write(uint64_t gpa, std::span<const uint8_t> in) const {
  auto s = SKIFF_TRY(slice(gpa, in.size()));
  if (!in.empty()) std::memcpy(s.data(), in.data(), in.size());
  return {};
}

uint64_t GuestMemory::page_size(uint64_t gpa) const {
  const MemoryRegion* r = find(gpa, 1);
  return r ? page_sizes_[static_cast<size_t>(r - regions_.data())] : 0;
}

Result<> GuestMemory::discard(uint64_t gpa, uint64_t len) const {
  const MemoryRegion* r = find(gpa, len);
  if (r == nullptr) return fail("cannot discard [{:#x}, +{:#x}): not RAM", gpa, len);
  uint64_t page = page_sizes_[static_cast<size_t>(r - regions_.data())];
  if (gpa % page != 0 || len % page != 0)
    return fail("cannot discard [{:#x}, +{:#x}): not aligned to the backing's {} KiB pages", gpa,
                len, page >> 10);
  if (len == 0) return {};
  uint64_t offset = gpa - r->gpa;
  if (r->fd >= 0) {
    if (::fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    static_cast<off_t>(r->fd_offset + offset), static_cast<off_t>(len)) < 0)
      return fail_errno("fallocate(PUNCH_HOLE) of guest RAM [{:#x}, +{:#x})", gpa, len);
    return {};
  }
  if (::madvise(r->host + offset, static_cast<size_t>(len), MADV_DONTNEED) < 0)
    return fail_errno("madvise(MADV_DONTNEED) of guest RAM [{:#x}, +{:#x})", gpa, len);
  return {};
}

std::optional<uint64_t> GuestMemory::gpa_of(std::span<const uint8_t> host) const {
  auto p = reinterpret_cast<uintptr_t>(host.data());
  for (const auto& r : regions_) {
    auto base = reinterpret_cast<uintptr_t>(r.host);
    if (p >= base && p - base <= r.size && host.size() <= r.size - (p - base))
      return r.gpa + (p - base);
  }
  return std::nullopt;
}

uint64_t GuestMemory::total_size() const {
  uint64_t t = 0;
  for (const auto& r : regions_) t += r.size;
  return t;
}

}  // namespace skiff

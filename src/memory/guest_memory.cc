#include "memory/guest_memory.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/statfs.h>

#include <algorithm>

namespace skiff {

namespace {

// The entry of `items` (regions or spans: gpa, size) that holds all of
// [gpa, gpa + len). Written so that nothing overflows: gpa + len is never
// formed, only differences of values already known to be in order.
template <typename T>
const T* holding(const std::vector<T>& items, uint64_t gpa, uint64_t len) {
  // Few regions (2-8): a linear scan beats a binary search here.
  for (const auto& r : items) {
    if (gpa >= r.gpa && gpa - r.gpa <= r.size && len <= r.size - (gpa - r.gpa)) return &r;
  }
  return nullptr;
}

}  // namespace

Result<GuestMemory> GuestMemory::create(std::vector<MemoryRegion> regions) {
  std::sort(regions.begin(), regions.end(),
            [](const MemoryRegion& a, const MemoryRegion& b) { return a.gpa < b.gpa; });
  for (size_t i = 0; i < regions.size(); ++i) {
    const auto& r = regions[i];
    if (r.size == 0 || r.host == nullptr) return fail("memory region at {:#x} is empty", r.gpa);
    if (r.gpa + r.size < r.gpa) return fail("memory region at {:#x} wraps around", r.gpa);
    if (r.size > UINTPTR_MAX - reinterpret_cast<uintptr_t>(r.host))
      return fail("memory region at {:#x} wraps around the host address space", r.gpa);
    if (i > 0 && regions[i - 1].gpa + regions[i - 1].size > r.gpa)
      return fail("memory regions at {:#x} and {:#x} overlap", regions[i - 1].gpa, r.gpa);
  }
  // Merge neighbours that continue each other in both address spaces; the
  // checks above make both end computations overflow-free.
  std::vector<Span> spans;
  for (const auto& r : regions) {
    if (!spans.empty()) {
      Span& last = spans.back();
      if (last.gpa + last.size == r.gpa && last.host + last.size == r.host) {
        last.size += r.size;
        continue;
      }
    }
    spans.push_back({r.gpa, r.size, r.host});
  }
  std::vector<uint64_t> page_sizes;
  for (const auto& r : regions) {
    // Only hugetlbfs (hugetlb memfds, file= on a hugetlbfs mount) has pages
    // larger than 4 KiB; other file systems' block size (st_blksize) says
    // nothing about the page cache's page size.
    uint64_t size = 4096;
    struct statfs fs {};
    if (r.fd >= 0 && ::fstatfs(r.fd, &fs) == 0 &&
        static_cast<uint64_t>(fs.f_type) == HUGETLBFS_MAGIC && fs.f_bsize > 4096)
      size = static_cast<uint64_t>(fs.f_bsize);
    page_sizes.push_back(size);
  }
  return GuestMemory(std::move(regions), std::move(spans), std::move(page_sizes));
}

const MemoryRegion* GuestMemory::find_region(uint64_t gpa, uint64_t len) const {
  return holding(regions_, gpa, len);
}

const GuestMemory::Span* GuestMemory::find_span(uint64_t gpa, uint64_t len) const {
  return holding(spans_, gpa, len);
}

bool GuestMemory::contains(uint64_t gpa, uint64_t len) const {
  return find_span(gpa, len) != nullptr;
}

Result<std::span<uint8_t>> GuestMemory::slice(uint64_t gpa, uint64_t len) const {
  const Span* r = find_span(gpa, len);
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
  const MemoryRegion* r = find_region(gpa, 1);
  return r ? page_sizes_[static_cast<size_t>(r - regions_.data())] : 0;
}

Result<> GuestMemory::discard(uint64_t gpa, uint64_t len) const {
  // Per region: the hole is punched in one backing.
  const MemoryRegion* r = find_region(gpa, len);
  if (r == nullptr)
    return fail("cannot discard [{:#x}, +{:#x}): {}", gpa, len,
                find_span(gpa, len) ? "crosses from one RAM backing into the next" : "not RAM");
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
  for (const auto& r : spans_) {
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

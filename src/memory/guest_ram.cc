#include "memory/guest_ram.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "base/log.h"
#include "memory/ram_backing.h"

namespace skiff {

namespace {

std::string zone_label(const RamZone& z) {
  return z.name.empty() ? std::string("--memory") : fmt::format("--memory-zone id={}", z.name);
}

uint64_t zone_size(const RamZone& z) {
  uint64_t n = 0;
  for (const auto& r : z.ranges) n += r.size;
  return n;
}

// Everything that can be checked before mapping: options, sizes and guest
// alignment of each range, NUMA nodes, and the huge page pools summed over
// all zones (two zones may each fit the pool but not both).
Result<> check_zones(std::span<const RamZone> zones) {
  std::map<std::pair<uint64_t, std::optional<uint32_t>>, uint64_t> huge_pages;
  for (const auto& z : zones) {
    std::string what = zone_label(z);
    SKIFF_TRY_VOID(check_ram_options(what, z.options));
    SKIFF_TRY_VOID(check_ram_size(what, zone_size(z), z.options));
    // KVM maps a guest huge page with a host huge page only if guest and
    // host addresses agree modulo the page size; a hugetlb mapping must
    // start at a page boundary of its file.
    uint64_t page = z.options.page_size();
    for (const auto& r : z.ranges) {
      if (r.gpa % page != 0 || r.size % page != 0)
        return fail(
            "{}: guest range [{:#x}, +{:#x}) is not aligned to its {} pages; give the zones "
            "before it sizes that are multiples of {}",
            what, r.gpa, r.size, z.options.hugepages ? huge_page_name(page) : "4 KiB",
            z.options.hugepages ? huge_page_name(page) : "4 KiB");
    }
    if (z.options.host_numa_node) SKIFF_TRY_VOID(check_numa_node(*z.options.host_numa_node));
    if (z.options.hugepages) huge_pages[{page, z.options.host_numa_node}] += zone_size(z) / page;
  }
  for (const auto& [key, pages] : huge_pages)
    SKIFF_TRY_VOID(check_huge_page_pool(key.first, pages, key.second));
  return {};
}

}  // namespace

Result<GuestRam> GuestRam::create(std::span<const RamRange> ranges) {
  RamZone zone{"", {ranges.begin(), ranges.end()}, {}};
  return create(std::span(&zone, 1));
}

Result<GuestRam> GuestRam::create(std::span<const RamZone> zones) {
  SKIFF_TRY_VOID(check_zones(zones));
  GuestRam ram;
  SKIFF_TRY_VOID(ram.reserve_runs(zones));
  for (const auto& z : zones) SKIFF_TRY_VOID(ram.map_zone(z));
  std::vector<MemoryRegion> regions;
  for (const auto& m : ram.maps_) regions.push_back(m.region);
  ram.memory_ = SKIFF_TRY(GuestMemory::create(std::move(regions)));
  return ram;
}

Result<> GuestRam::reserve_runs(std::span<const RamZone> zones) {
  struct Piece {
    uint64_t gpa, size, page;
  };
  std::vector<Piece> pieces;
  for (const auto& z : zones)
    for (const auto& r : z.ranges) {
      if (r.size == 0 || r.gpa + r.size < r.gpa)
        return fail("{}: guest range [{:#x}, +{:#x}) is empty or wraps around", zone_label(z),
                    r.gpa, r.size);
      pieces.push_back({r.gpa, r.size, z.options.page_size()});
    }
  std::sort(pieces.begin(), pieces.end(), [](auto& a, auto& b) { return a.gpa < b.gpa; });
  // Checked here, not only in GuestMemory::create: MAP_FIXED of one zone
  // over another's piece would silently replace it.
  for (size_t i = 1; i < pieces.size(); ++i)
    if (pieces[i - 1].gpa + pieces[i - 1].size > pieces[i].gpa)
      return fail("guest RAM ranges at {:#x} and {:#x} overlap", pieces[i - 1].gpa, pieces[i].gpa);
  for (size_t i = 0; i < pieces.size();) {
    Reservation run{pieces[i].gpa, 0, nullptr};
    // KVM backs a guest huge page with a host huge page only where the two
    // addresses agree modulo its size; 2 MiB at least so THP can do it too.
    uint64_t align = kHugePage2M;
    size_t j = i;
    for (; j < pieces.size() && pieces[j].gpa == run.gpa + run.size; ++j) {
      run.size += pieces[j].size;
      align = std::max(align, pieces[j].page);
    }
    i = j;
    run.host = SKIFF_TRY(reserve_address_space(run.size, align, run.gpa % align));
    reserved_.push_back(run);
  }
  return {};
}

uint8_t* GuestRam::reserved_host(uint64_t gpa, uint64_t size) const {
  for (const auto& r : reserved_)
    if (gpa >= r.gpa && gpa - r.gpa <= r.size && size <= r.size - (gpa - r.gpa))
      return r.host + (gpa - r.gpa);
  return nullptr;
}

Result<> GuestRam::map_zone(const RamZone& zone) {
  const RamOptions& o = zone.options;
  std::string what = zone_label(zone);
  bool shared = o.shared || o.hugepages;
  int fd = -1;
  if (shared) {
    // memfd names show in /proc/PID/maps as "/memfd:NAME"; the kernel takes
    // at most 249 bytes.
    std::string name = zone.name.empty() ? "skiff-ram" : ("skiff-ram-" + zone.name).substr(0, 200);
    fds_.push_back(SKIFF_TRY(create_ram_memfd(name, zone_size(zone), o)));
    fd = fds_.back().get();
  }
  uint64_t offset = 0;
  for (const auto& r : zone.ranges) {
    // Private RAM is MAP_NORESERVE: untouched pages cost nothing. Hugetlb RAM
    // is reserved from the pool at mmap time (no MAP_NORESERVE), so a guest
    // can never fault on a page the pool no longer has. Prefaulting happens
    // after mbind (MAP_POPULATE would place pages before the policy exists).
    int flags = MAP_FIXED | (shared ? MAP_SHARED : (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE));
    uint8_t* at = reserved_host(r.gpa, r.size);
    if (at == nullptr) return fail("{}: guest range {:#x} has no host reservation", what, r.gpa);
    void* p = ::mmap(at, r.size, PROT_READ | PROT_WRITE, flags, fd,
                     shared ? static_cast<off_t>(offset) : 0);
    if (p == MAP_FAILED) {
      int err = errno;
      // A failed MAP_FIXED may already have unmapped the placeholder; put
      // it back so nothing else lands inside the reservation before
      // unmap_all() releases it.
      (void)::mmap(at, r.size, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
      errno = err;
      return fail_errno("{}: cannot map {} MiB of guest RAM at {:#x}", what, r.size >> 20, r.gpa);
    }
    // Hugetlb RAM is populated again after a discard: punching the hole
    // also drops the pool reservation made at mmap, and a later fault with
    // the pool empty would be a SIGBUS instead of an error.
    maps_.push_back({{r.gpa, r.size, static_cast<uint8_t*>(p), fd, shared ? offset : 0},
                     o.prefault || o.hugepages});
    offset += r.size;

    if (o.host_numa_node) SKIFF_TRY_VOID(bind_to_numa_node(p, r.size, *o.host_numa_node));
    if (o.mergeable && ::madvise(p, r.size, MADV_MERGEABLE) != 0)
      return fail_errno("{}: MADV_MERGEABLE (KSM) on guest RAM at {:#x}", what, r.gpa);
    // THP advice means nothing for hugetlb memory, which is huge already.
    if (!o.hugepages && o.thp != Thp::kDefault &&
        ::madvise(p, r.size, o.thp == Thp::kOn ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0)
      return fail_errno("{}: {} on guest RAM at {:#x}", what,
                        o.thp == Thp::kOn ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE", r.gpa);
    if (o.prefault) {
      auto populated = populate_for_write(p, r.size);
      if (!populated) return fail("{}: {}", what, populated.error().what());
    }
  }
  return {};
}

GuestRam::~GuestRam() {
  unmap_all();
}

GuestRam::GuestRam(GuestRam&& o) noexcept
    : reserved_(std::exchange(o.reserved_, {})),
      maps_(std::exchange(o.maps_, {})),
      fds_(std::exchange(o.fds_, {})),
      memory_(std::exchange(o.memory_, {})) {}

GuestRam& GuestRam::operator=(GuestRam&& o) noexcept {
  if (this != &o) {
    unmap_all();
    reserved_ = std::exchange(o.reserved_, {});
    maps_ = std::exchange(o.maps_, {});
    fds_ = std::exchange(o.fds_, {});
    memory_ = std::exchange(o.memory_, {});
  }
  return *this;
}

void GuestRam::unmap_all() {
  // Each reservation covers its pieces: one munmap releases them and any
  // placeholder left between them.
  for (const auto& r : reserved_) ::munmap(r.host, r.size);
  reserved_.clear();
  maps_.clear();
  fds_.clear();
  memory_ = {};
}

void GuestRam::discard_all() {
  for (const auto& m : maps_) {
    const MemoryRegion& r = m.region;
    // MADV_DONTNEED on a shared mapping only unmaps the pages: the memfd
    // keeps them. Punching a hole frees them (and returns huge pages to
    // the pool).
    int rc = r.fd >= 0 ? ::fallocate(r.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                     static_cast<off_t>(r.fd_offset), static_cast<off_t>(r.size))
                       : ::madvise(r.host, r.size, MADV_DONTNEED);
    if (rc != 0)
      LOG_WARN("cannot discard guest RAM at {:#x} (+{:#x}): {}", r.gpa, r.size,
               std::strerror(errno));
    if (m.prefault) {
      auto populated = populate_for_write(r.host, r.size);
      if (!populated)
        LOG_WARN("guest RAM at {:#x} not populated again after reboot: {}", r.gpa,
                 populated.error().what());
    }
  }
}

}  // namespace skiff

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
#include "memory/ram_file.h"

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

// The host page size of a zone's backing: hugetlb memfd or hugetlbfs file.
uint64_t zone_page_size(const RamZone& z, const std::optional<RamFileInfo>& file) {
  return file ? file->page_size : z.options.page_size();
}

// The pages of one huge page pool (page size, NUMA node) that zones take,
// and what to call them in a message.
struct PoolUse {
  uint64_t pages = 0;
  std::string what;
};

// Everything that can be checked before mapping: options, sizes and guest
// alignment of each range, file= backings, NUMA nodes, and the huge page
// pools summed over all zones (two zones may each fit the pool but not
// both). Returns each zone's file (nothing for memfd/anonymous zones).
Result<std::vector<std::optional<RamFileInfo>>> check_zones(std::span<const RamZone> zones) {
  std::vector<std::optional<RamFileInfo>> files;
  std::map<std::pair<uint64_t, std::optional<uint32_t>>, PoolUse> huge_pages;
  for (const auto& z : zones) {
    std::string what = zone_label(z);
    SKIFF_TRY_VOID(check_ram_options(what, z.options));
    SKIFF_TRY_VOID(check_ram_size(what, zone_size(z), z.options));
    std::optional<RamFileInfo> file;
    if (!z.options.file.empty()) file = SKIFF_TRY(check_ram_file(what, zone_size(z), z.options));
    // KVM maps a guest huge page with a host huge page only if guest and
    // host addresses agree modulo the page size; a hugetlb mapping must
    // start at a page boundary of its file.
    uint64_t page = zone_page_size(z, file);
    bool huge = page > 4096;
    for (const auto& r : z.ranges) {
      if (r.gpa % page != 0 || r.size % page != 0)
        return fail(
            "{}: guest range [{:#x}, +{:#x}) is not aligned to its {} pages; give the zones "
            "before it sizes that are multiples of {}",
            what, r.gpa, r.size, huge ? huge_page_name(page) : "4 KiB",
            huge ? huge_page_name(page) : "4 KiB");
    }
    if (z.options.host_numa_node) SKIFF_TRY_VOID(check_numa_node(*z.options.host_numa_node));
    uint64_t pages = z.options.hugepages ? zone_size(z) / page
                     : file              ? ram_file_pool_pages(*file, zone_size(z), z.options)
                                         : 0;
    if (pages != 0) {
      PoolUse& use = huge_pages[{page, z.options.host_numa_node}];
      std::string label = z.options.hugepages
                              ? std::string("--memory hugepages=on")
                              : fmt::format("{}: file={} (hugetlbfs)", what, z.options.file);
      use.what = use.what.empty() || use.what == label ? label : "huge page memory zones";
      use.pages += pages;
    }
    files.push_back(std::move(file));
  }
  for (const auto& [key, use] : huge_pages)
    SKIFF_TRY_VOID(check_huge_page_pool(key.first, use.pages, key.second, use.what));
  return files;
}

}  // namespace

Result<GuestRam> GuestRam::create(std::span<const RamRange> ranges) {
  RamZone zone{"", {ranges.begin(), ranges.end()}, {}};
  return create(std::span(&zone, 1));
}

Result<GuestRam> GuestRam::create(std::span<const RamZone> zones) {
  auto files = SKIFF_TRY(check_zones(zones));
  GuestRam ram;
  std::vector<ReservedRuns::Piece> pieces;
  for (size_t i = 0; i < zones.size(); ++i)
    for (const auto& r : zones[i].ranges)
      pieces.push_back({r.gpa, r.size, zone_page_size(zones[i], files[i])});
  ram.reserved_ = SKIFF_TRY(ReservedRuns::reserve(std::move(pieces)));
  for (size_t i = 0; i < zones.size(); ++i) SKIFF_TRY_VOID(ram.map_zone(zones[i], files[i]));
  std::vector<MemoryRegion> regions;
  for (const auto& m : ram.maps_) regions.push_back(m.region);
  ram.memory_ = SKIFF_TRY(GuestMemory::create(std::move(regions)));
  return ram;
}

Result<> GuestRam::map_zone(const RamZone& zone, const std::optional<RamFileInfo>& file) {
  const RamOptions& o = zone.options;
  std::string what = zone_label(zone);
  bool hugetlb = o.hugepages || (file && file->hugetlbfs);
  // MAP_SHARED: the fd goes to vhost-user back ends and the balloon punches
  // holes in it. A private file mapping keeps guest writes in anonymous
  // memory: it exports no fd (a back end would not see the writes).
  bool shared = o.shared || o.hugepages;
  int fd = -1;
  if (file) {
    fds_.push_back(SKIFF_TRY(open_ram_file(what, *file, zone_size(zone), o)));
    fd = fds_.back().get();
  } else if (shared) {
    // memfd names show in /proc/PID/maps as "/memfd:NAME"; the kernel takes
    // at most 249 bytes.
    std::string name = zone.name.empty() ? "skiff-ram" : ("skiff-ram-" + zone.name).substr(0, 200);
    fds_.push_back(SKIFF_TRY(create_ram_memfd(name, zone_size(zone), o)));
    fd = fds_.back().get();
  }
  // The user's own file keeps its contents over a guest reboot (as with
  // Cloud Hypervisor); memfds and temporary files are wiped.
  bool keep_on_reset = file && !file->directory && o.shared;
  uint64_t offset = 0;
  for (const auto& r : zone.ranges) {
    // Private RAM is MAP_NORESERVE: untouched pages cost nothing. Hugetlb RAM
    // is reserved from the pool at mmap time (no MAP_NORESERVE), so a guest
    // can never fault on a page the pool no longer has. Prefaulting happens
    // after mbind (MAP_POPULATE would place pages before the policy exists).
    int flags = shared ? MAP_SHARED : (MAP_PRIVATE | (hugetlb ? 0 : MAP_NORESERVE));
    auto mapped = reserved_.map(r.gpa, r.size, PROT_READ | PROT_WRITE, flags, fd, offset);
    if (!mapped) return fail("{}: {}", what, mapped.error().what());
    uint8_t* p = *mapped;
    // Hugetlb RAM is populated again after a discard: punching the hole
    // also drops the pool reservation made at mmap, and a later fault with
    // the pool empty would be a SIGBUS instead of an error.
    maps_.push_back({{r.gpa, r.size, p, shared ? fd : -1, shared ? offset : 0},
                     o.prefault || hugetlb,
                     !keep_on_reset});
    offset += r.size;

    if (o.host_numa_node) SKIFF_TRY_VOID(bind_to_numa_node(p, r.size, *o.host_numa_node));
    if (o.mergeable && ::madvise(p, r.size, MADV_MERGEABLE) != 0)
      return fail_errno("{}: MADV_MERGEABLE (KSM) on guest RAM at {:#x}", what, r.gpa);
    // THP advice means nothing for hugetlb memory, which is huge already.
    if (!hugetlb && o.thp != Thp::kDefault &&
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
  reserved_.release();
  maps_.clear();
  fds_.clear();
  memory_ = {};
}

void GuestRam::discard_all() {
  for (const auto& m : maps_) {
    if (!m.discard_on_reset) continue;
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

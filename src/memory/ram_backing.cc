#include "memory/ram_backing.h"

#include <linux/memfd.h>
#include <linux/mempolicy.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <vector>

namespace skiff {

namespace {

// A sysfs counter such as free_hugepages.
Result<uint64_t> read_counter(const std::string& path) {
  std::string text = SKIFF_TRY(read_file(path));
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end == text.data()) return fail("{}: not a number: '{}'", path, text);
  return v;
}

// The node list in /sys/devices/system/node/online, e.g. "0" or "0-1,3",
// as written (for messages) and as a membership test.
bool node_in_list(std::string_view list, uint32_t node) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    uint32_t lo = 0, hi = 0;
    size_t dash = item.find('-');
    auto first = item.substr(0, dash);
    if (std::from_chars(first.data(), first.data() + first.size(), lo).ec != std::errc{}) continue;
    hi = lo;
    if (dash != std::string_view::npos) {
      auto second = item.substr(dash + 1);
      if (std::from_chars(second.data(), second.data() + second.size(), hi).ec != std::errc{})
        continue;
    }
    if (node >= lo && node <= hi) return true;
  }
  return false;
}

}  // namespace

std::string huge_page_name(uint64_t page_size) {
  return page_size >= kHugePage1G ? fmt::format("{} GiB", page_size >> 30)
                                  : fmt::format("{} MiB", page_size >> 20);
}

Result<> check_ram_options(std::string_view what, const RamOptions& o) {
  if (o.hugepages && o.hugepage_size != kHugePage2M && o.hugepage_size != kHugePage1G)
    return fail("{}: hugepage_size={} is not 2M or 1G", what, o.hugepage_size);
  if (!o.file.empty() && o.hugepages)
    return fail(
        "{}: file={} with hugepages=on: give one of them (a file on a hugetlbfs mount is huge "
        "page memory already; hugepages=on is for memfd RAM)",
        what, o.file);
  if (o.mergeable && !o.file.empty())
    return fail("{}: mergeable=on with file={}: KSM merges only anonymous memory", what, o.file);
  if (o.mergeable && (o.shared || o.hugepages))
    return fail(
        "{}: mergeable=on needs private memory: KSM merges only private anonymous pages, "
        "not {} memory",
        what, o.hugepages ? "hugepages=on" : "shared=on");
  return {};
}

Result<> check_ram_size(std::string_view what, uint64_t size, const RamOptions& o) {
  if (size == 0) return fail("{}: size=0: RAM must not be empty", what);
  if (size % o.page_size() != 0) {
    if (o.hugepages)
      return fail("{}: size={} is not a multiple of the {} huge page size", what, size,
                  huge_page_name(o.page_size()));
    return fail("{}: size={} is not a multiple of 4 KiB", what, size);
  }
  return {};
}

std::string huge_page_pool_dir(uint64_t page_size, std::optional<uint32_t> node) {
  std::string pool = fmt::format("hugepages-{}kB", page_size >> 10);
  if (node) return fmt::format("/sys/devices/system/node/node{}/hugepages/{}", *node, pool);
  return "/sys/kernel/mm/hugepages/" + pool;
}

Result<> check_huge_page_pool(uint64_t page_size, uint64_t pages, std::optional<uint32_t> node,
                              std::string_view what) {
  std::string dir = huge_page_pool_dir(page_size);
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    return fail("{}: this host has no {} huge pages ({} is missing)", what,
                huge_page_name(page_size), dir);
  uint64_t free = SKIFF_TRY(read_counter(dir + "/free_hugepages"));
  // The pool size that would leave enough free, given the pages in use.
  uint64_t total = SKIFF_TRY(read_counter(dir + "/nr_hugepages"));
  uint64_t want = total - std::min(total, free) + pages;
  // /proc/sys/vm/nr_hugepages is the default (2 MiB) pool only; 1 GiB pages
  // are reserved through their own sysfs file (or on the kernel command line).
  std::string how = page_size == kHugePage2M
                        ? fmt::format("echo {} > /proc/sys/vm/nr_hugepages", want)
                        : fmt::format("echo {} > {}/nr_hugepages", want, dir);
  if (free < pages)
    return fail("{}: needs {} {} pages, only {} free in {}; reserve with {}", what, pages,
                huge_page_name(page_size), free, dir, how);
  if (node) {
    std::string node_dir = huge_page_pool_dir(page_size, node);
    uint64_t node_free = SKIFF_TRY(read_counter(node_dir + "/free_hugepages"));
    if (node_free < pages)
      return fail(
          "{}: needs {} {} pages on host NUMA node {}, only {} free in {}; "
          "reserve with echo {} > {}/nr_hugepages",
          what, pages, huge_page_name(page_size), *node, node_free, node_dir, pages, node_dir);
  }
  return {};
}

Result<> check_numa_node(uint32_t node) {
  auto online = read_file("/sys/devices/system/node/online");
  if (!online)
    return fail("host_numa_node={}: this host shows no NUMA nodes ({})", node,
                online.error().message);
  std::string list = *online;
  while (!list.empty() && (list.back() == '\n' || list.back() == ' ')) list.pop_back();
  if (!node_in_list(list, node))
    return fail("host_numa_node={}: no such online host NUMA node (online: {})", node, list);
  return {};
}

Result<Fd> create_ram_memfd(const std::string& name, uint64_t size, const RamOptions& o) {
  unsigned flags = MFD_CLOEXEC;
  if (o.hugepages)
    flags |= MFD_HUGETLB | (o.hugepage_size == kHugePage1G ? MFD_HUGE_1GB : MFD_HUGE_2MB);
  int fd = ::memfd_create(name.c_str(), flags);
  if (fd < 0) return fail_errno("memfd_create '{}'", name);
  Fd owned(fd);
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0)
    return fail_errno("cannot size memfd '{}' to {} bytes", name, size);
  return owned;
}

Result<> bind_to_numa_node(void* addr, uint64_t len, uint32_t node) {
  // One bit per node; maxnode counts bits (the kernel reads maxnode - 1).
  constexpr size_t kBits = 8 * sizeof(unsigned long);
  std::vector<unsigned long> mask(node / kBits + 1, 0);
  mask[node / kBits] = 1ul << (node % kBits);
  long r = ::syscall(SYS_mbind, addr, len, MPOL_BIND, mask.data(), mask.size() * kBits + 1, 0);
  if (r != 0) return fail_errno("mbind of {} MiB to host NUMA node {}", len >> 20, node);
  return {};
}

Result<uint8_t*> reserve_address_space(uint64_t size, uint64_t align, uint64_t phase) {
  if (align == 0 || (align & (align - 1)) != 0 || phase >= align)
    return fail("reserve_address_space: bad alignment {:#x} / phase {:#x}", align, phase);
  if (size == 0 || size > UINT64_MAX - align)
    return fail("cannot reserve {:#x} bytes of host address space for guest RAM", size);
  // Over-reserve by one alignment unit, then trim both ends so the kept
  // range starts at the wanted phase.
  uint64_t len = size + align;
  void* p = ::mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return fail_errno("cannot reserve {} MiB of host address space for guest RAM", size >> 20);
  auto base = reinterpret_cast<uintptr_t>(p);
  uintptr_t start = (base & ~(align - 1)) + phase;
  if (start < base) start += align;
  if (start > base) ::munmap(p, start - base);
  if (base + len > start + size)
    ::munmap(reinterpret_cast<void*>(start + size), base + len - (start + size));
  return reinterpret_cast<uint8_t*>(start);
}

Result<> populate_for_write(void* addr, uint64_t len) {
  if (::madvise(addr, len, MADV_POPULATE_WRITE) != 0)
    return fail_errno("cannot prefault {} MiB of guest RAM", len >> 20);
  return {};
}

}  // namespace skiff

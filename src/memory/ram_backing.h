// The host facts and system calls behind RamOptions: option checks, the
// huge page pool, NUMA nodes, memfd creation, mbind and populate. Kept apart
// from GuestRam so each piece can be checked with a clear message before
// any memory is mapped.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/fd.h"
#include "base/result.h"
#include "memory/ram_options.h"

namespace skiff {

// What the user asked for, without looking at the host: hugepage_size is 2M
// or 1G, mergeable is not combined with shared/huge/file memory (KSM merges
// only private anonymous pages; the kernel would ignore MADV_MERGEABLE there
// silently), file is not combined with hugepages (the file system decides).
// `what` names the option ("--memory", "--memory-zone id=z0").
[[nodiscard]] Result<> check_ram_options(std::string_view what, const RamOptions& o);

// A size of RAM with these options: a non-zero multiple of the page size.
[[nodiscard]] Result<> check_ram_size(std::string_view what, uint64_t size, const RamOptions& o);

// "2 MiB" / "1 GiB".
[[nodiscard]] std::string huge_page_name(uint64_t page_size);

// The sysfs directory of a huge page pool, e.g.
// /sys/kernel/mm/hugepages/hugepages-2048kB, or the same pool of one NUMA
// node under /sys/devices/system/node/nodeN/hugepages.
[[nodiscard]] std::string huge_page_pool_dir(uint64_t page_size,
                                             std::optional<uint32_t> node = std::nullopt);

// Refuses, naming the pool and how to grow it, when fewer than `pages` pages
// of `page_size` are free (in the whole host, and on `node` if given).
// `what` starts the message.
[[nodiscard]] Result<> check_huge_page_pool(uint64_t page_size, uint64_t pages,
                                            std::optional<uint32_t> node,
                                            std::string_view what = "--memory hugepages=on");

// The node exists in /sys/devices/system/node (error lists the nodes).
[[nodiscard]] Result<> check_numa_node(uint32_t node);

// memfd_create(MFD_CLOEXEC [| MFD_HUGETLB | MFD_HUGE_2MB/1GB]) sized to
// `size` bytes.
[[nodiscard]] Result<Fd> create_ram_memfd(const std::string& name, uint64_t size,
                                          const RamOptions& o);

// mbind(MPOL_BIND) of [addr, addr + len) to one node; raw syscall, as glibc
// has no wrapper and libnuma would be the only user.
[[nodiscard]] Result<> bind_to_numa_node(void* addr, uint64_t len, uint32_t node);

// Reserves `size` bytes of host address space (PROT_NONE, MAP_NORESERVE: no
// memory, no commit charge) starting at an address that is `phase` modulo
// `align` (a power of two, phase < align). Guest RAM pieces are then mapped
// over it with MAP_FIXED; munmap of the whole range releases all of it.
[[nodiscard]] Result<uint8_t*> reserve_address_space(uint64_t size, uint64_t align, uint64_t phase);

// Faults every page of [addr, addr + len) in for writing
// (MADV_POPULATE_WRITE, Linux 5.14).
[[nodiscard]] Result<> populate_for_write(void* addr, uint64_t len);

}  // namespace skiff

// file= backing of a memory zone (Cloud Hypervisor's MemoryZoneConfig.file,
// `--memory-zone id=z,size=S,file=PATH[,shared=on]`).
//
// PATH is either
//   - a regular file: the zone is its first `size` bytes. A larger file is
//     used as is and never shrunk. With shared=on a missing file is created
//     (mode 0600) and a shorter one extended with zeros (ftruncate never
//     drops data when it grows a file); with shared=off the file is only
//     read, so it must exist and hold `size` bytes (skiff leaves it
//     untouched, and mapping past its end would be a SIGBUS later);
//   - a directory, e.g. a hugetlbfs or tmpfs mount: an unlinked temporary
//     file (O_TMPFILE) of `size` bytes is created there and vanishes with
//     skiff.
// On hugetlbfs the page size comes from statfs() and `size` must be a
// multiple of it. shared=on maps MAP_SHARED (guest writes reach the file;
// vhost-user back ends get its fd), shared=off MAP_PRIVATE.
//
// Everything is checked before anything is created or mapped, with messages
// that name the path: a missing directory, something that is neither a
// regular file nor a directory, a size that is not a multiple of the page
// size, a file system with too little free space for a shared mapping (a
// shared page the file system cannot store would be a SIGBUS in skiff).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/fd.h"
#include "base/result.h"
#include "memory/ram_options.h"

namespace skiff {

// What file=PATH names, looked at without changing anything.
struct RamFileInfo {
  std::string path;
  bool directory = false;  // PATH is a directory: an O_TMPFILE is created in it
  bool exists = false;     // PATH is an existing regular file
  uint64_t file_size = 0;  // its size
  uint64_t allocated = 0;  // bytes it already has on disk (st_blocks)
  bool hugetlbfs = false;
  uint64_t page_size = 4096;  // hugetlbfs: its huge page size
  // What the file system can still store; nothing if it reports no limit
  // (hugetlbfs without size=: the huge page pool is the limit).
  std::optional<uint64_t> free_bytes;
};

// stat/statfs of PATH (or of its directory when PATH does not exist yet).
// `what` names the option in messages ("--memory-zone id=z0").
[[nodiscard]] Result<RamFileInfo> inspect_ram_file(std::string_view what, const std::string& path);

// `size` bytes of RAM with options `o` fit the file as described above.
[[nodiscard]] Result<> check_ram_file(std::string_view what, const RamFileInfo& f, uint64_t size,
                                      const RamOptions& o);

// inspect_ram_file + check_ram_file: what the option parsers call, so a bad
// file= is a usage error before any memory is set up.
[[nodiscard]] Result<RamFileInfo> check_ram_file(std::string_view what, uint64_t size,
                                                 const RamOptions& o);

// Huge pages the mapping will take from the host pool (hugetlbfs only):
// every page for a new file or a private mapping, the missing ones for an
// existing file mapped shared.
[[nodiscard]] uint64_t ram_file_pool_pages(const RamFileInfo& f, uint64_t size,
                                           const RamOptions& o);

// Opens (shared=on: creates or extends) the file checked above; the fd is
// ready to map `size` bytes from offset 0.
[[nodiscard]] Result<Fd> open_ram_file(std::string_view what, const RamFileInfo& f, uint64_t size,
                                       const RamOptions& o);

}  // namespace skiff

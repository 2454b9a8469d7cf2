#include "memory/ram_file.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "memory/ram_backing.h"

namespace skiff {

namespace {

const char* file_type_name(mode_t mode) {
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// The file system facts of `dir_or_file`: hugetlbfs page size, free space.
Result<> read_fs(std::string_view what, const std::string& path, RamFileInfo& f) {
  struct statfs fs {};
  if (::statfs(path.c_str(), &fs) != 0) return fail_errno("{}: file={}: statfs", what, f.path);
  struct statvfs vfs {};
  if (::statvfs(path.c_str(), &vfs) != 0) return fail_errno("{}: file={}: statvfs", what, f.path);
  f.hugetlbfs = static_cast<uint64_t>(fs.f_type) == HUGETLBFS_MAGIC;
  if (f.hugetlbfs) f.page_size = static_cast<uint64_t>(fs.f_bsize);
  // No blocks at all: the file system has no size limit (hugetlbfs or tmpfs
  // mounted without size=).
  if (vfs.f_blocks != 0) f.free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  return {};
}

std::string mib(uint64_t bytes) {
  return fmt::format("{} MiB", (bytes + (1u << 20) - 1) >> 20);
}

}  // namespace

Result<RamFileInfo> inspect_ram_file(std::string_view what, const std::string& path) {
  RamFileInfo f;
  f.path = path;
  if (path.empty()) return fail("{}: file= is empty: give a file or a directory", what);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      f.directory = true;
    } else if (S_ISREG(st.st_mode)) {
      f.exists = true;
      f.file_size = static_cast<uint64_t>(st.st_size);
      f.allocated = static_cast<uint64_t>(st.st_blocks) * 512;
    } else {
      return fail("{}: file={} is {}: give a regular file or a directory", what, path,
                  file_type_name(st.st_mode));
    }
    SKIFF_TRY_VOID(read_fs(what, path, f));
    return f;
  }
  if (errno != ENOENT && errno != ENOTDIR) return fail_errno("{}: file={}", what, path);
  // A file to create: its directory must be there.
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  if (::stat(dir.c_str(), &st) != 0)
    return fail("{}: file={}: directory {} does not exist", what, path, dir);
  if (!S_ISDIR(st.st_mode)) return fail("{}: file={}: {} is not a directory", what, path, dir);
  SKIFF_TRY_VOID(read_fs(what, dir, f));
  return f;
}

Result<> check_ram_file(std::string_view what, const RamFileInfo& f, uint64_t size,
                        const RamOptions& o) {
  if (f.hugetlbfs && size % f.page_size != 0)
    return fail("{}: size={} is not a multiple of the {} huge page size of file={} (hugetlbfs)",
                what, size, huge_page_name(f.page_size), f.path);
  if (!o.shared && !f.directory) {
    // MAP_PRIVATE reads the file and keeps guest writes in private memory:
    // skiff never changes the file, so it must already hold the zone.
    if (!f.exists)
      return fail(
          "{}: file={} does not exist: with shared=off the file is only read; give an existing "
          "file, shared=on to create it, or a directory for a temporary file",
          what, f.path);
    if (f.file_size < size)
      return fail(
          "{}: file={} has {} bytes, fewer than size={}: with shared=off skiff does not change "
          "the file; extend it (truncate -s {} {}) or give shared=on",
          what, f.path, f.file_size, size, size, f.path);
  }
  if (o.shared && f.free_bytes) {
    // Pages of a shared mapping live in the file; one the file system
    // cannot store would be a SIGBUS in skiff when the guest touches it.
    uint64_t need = f.exists ? size - std::min(size, f.allocated) : size;
    if (need > *f.free_bytes)
      return fail(
          "{}: file={}: no space: the zone needs {} more on its file system, which has {} "
          "free",
          what, f.path, mib(need), mib(*f.free_bytes));
  }
  return {};
}

Result<RamFileInfo> check_ram_file(std::string_view what, uint64_t size, const RamOptions& o) {
  RamFileInfo f = SKIFF_TRY(inspect_ram_file(what, o.file));
  SKIFF_TRY_VOID(check_ram_file(what, f, size, o));
  return f;
}

uint64_t ram_file_pool_pages(const RamFileInfo& f, uint64_t size, const RamOptions& o) {
  if (!f.hugetlbfs) return 0;
  // A private hugetlb mapping reserves every page at mmap (copies on write).
  if (f.exists && o.shared) return (size - std::min(size, f.allocated)) / f.page_size;
  return size / f.page_size;
}

Result<Fd> open_ram_file(std::string_view what, const RamFileInfo& f, uint64_t size,
                         const RamOptions& o) {
  int fd = -1;
  if (f.directory) {
    fd = ::open(f.path.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR))
      return fail(
          "{}: file={}: this file system cannot create unlinked files (O_TMPFILE); give "
          "a file instead of the directory",
          what, f.path);
  } else if (f.exists) {
    // shared=off never opens the file for writing: MAP_PRIVATE needs only
    // read access, and the file stays untouched whatever the guest does.
    fd = ::open(f.path.c_str(), (o.shared ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  } else {
    // O_EXCL: never take over a file that appeared since it was checked.
    fd = ::open(f.path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  }
  if (fd < 0) return fail_errno("{}: cannot open file={}", what, f.path);
  Fd owned(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail_errno("{}: file={}: fstat", what, f.path);
  if (!S_ISREG(st.st_mode))
    return fail("{}: file={} is {}: give a regular file or a directory", what, f.path,
                file_type_name(st.st_mode));
  // Grows only: a longer file keeps everything past the zone. A temporary
  // file is sized whatever the mapping.
  if (static_cast<uint64_t>(st.st_size) < size) {
    if (!o.shared && !f.directory)
      return fail("{}: file={} has {} bytes, fewer than size={}", what, f.path, st.st_size, size);
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0)
      return fail_errno("{}: cannot extend file={} to {} bytes", what, f.path, size);
  }
  return owned;
}

}  // namespace skiff

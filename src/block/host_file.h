// HostFile: the small synchronous file interface the image formats do their
// I/O through (pread / pwrite / fdatasync and friends). Kept narrow so the
// io_uring engine of the virtio-blk issue can replace it without touching
// format code. All calls are positional and thread-safe at the syscall level.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/fd.h"
#include "base/result.h"
#include "block/disk_image.h"

namespace skiff {

class HostFile {
 public:
  // Opens `path` read-only or read-write (O_CLOEXEC). The error names the path.
  // `direct`: O_DIRECT (direct=on), bypassing the host page cache. The
  // alignment O_DIRECT needs is probed (statx STATX_DIOALIGN, else
  // BLKSSZGET for block devices, else 4096); a file system that cannot do
  // O_DIRECT (tmpfs before Linux 6.6, some FUSE) is refused with an error
  // naming the file. The synchronous calls below bounce every transfer
  // through an aligned buffer (read-modify-write for partial blocks), so
  // callers need not care; engines that want zero-copy check alignment().
  [[nodiscard]] static Result<HostFile> open(const std::string& path, bool read_only,
                                             bool direct = false);
  // Creates (or truncates) `path` read-write.
  [[nodiscard]] static Result<HostFile> create(const std::string& path);

  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] bool read_only() const { return read_only_; }
  [[nodiscard]] int fd() const { return fd_.get(); }
  [[nodiscard]] bool direct() const { return alignment_.any(); }
  [[nodiscard]] IoAlignment alignment() const { return alignment_; }

  // Reads exactly out.size() bytes at offset; a short read (EOF) is an error.
  [[nodiscard]] Result<> pread(uint64_t offset, std::span<uint8_t> out) const;
  // Reads up to out.size() bytes; returns how many were read before EOF.
  [[nodiscard]] Result<size_t> pread_some(uint64_t offset, std::span<uint8_t> out) const;
  [[nodiscard]] Result<> pwrite(uint64_t offset, std::span<const uint8_t> in);
  [[nodiscard]] Result<> sync();  // fdatasync
  [[nodiscard]] Result<uint64_t> size() const;
  [[nodiscard]] Result<> truncate(uint64_t size);
  // Frees the range, keeping the file size (FALLOC_FL_PUNCH_HOLE | KEEP_SIZE).
  [[nodiscard]] Result<> punch_hole(uint64_t offset, uint64_t length);
  // Makes the range read as zeroes: FALLOC_FL_ZERO_RANGE, else punch (if
  // may_unmap and inside the file), else writing zeroes.
  [[nodiscard]] Result<> zero_range(uint64_t offset, uint64_t length, bool may_unmap);
  // fallocate(mode 0): reserves space (preallocation=full).
  [[nodiscard]] Result<> allocate(uint64_t offset, uint64_t length);
  // SEEK_DATA / SEEK_HOLE: is `offset` in data, and where does that extent end
  // (capped at `end`). Files without hole support report all data.
  struct Extent {
    bool data = true;
    uint64_t end = 0;
  };
  [[nodiscard]] Result<Extent> extent_at(uint64_t offset, uint64_t end) const;

 private:
  [[nodiscard]] Result<size_t> pread_some_direct(uint64_t offset, std::span<uint8_t> out) const;
  [[nodiscard]] Result<> pwrite_direct(uint64_t offset, std::span<const uint8_t> in);
  [[nodiscard]] Result<size_t> pread_raw(uint64_t offset, std::span<uint8_t> out) const;
  [[nodiscard]] Result<> pwrite_raw(uint64_t offset, std::span<const uint8_t> in);

  Fd fd_;
  IoAlignment alignment_;
  std::string path_;
  bool read_only_ = false;
};

}  // namespace skiff

#include "block/host_file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

namespace skiff {

Result<HostFile> HostFile::open(const std::string& path, bool read_only) {
  HostFile f;
  f.fd_ = SKIFF_TRY(open_file(path, read_only ? O_RDONLY : O_RDWR));
  f.path_ = path;
  f.read_only_ = read_only;
  return f;
}

Result<HostFile> HostFile::create(const std::string& path) {
  HostFile f;
  f.fd_ = SKIFF_TRY(open_file(path, O_RDWR | O_CREAT | O_TRUNC, 0644));
  f.path_ = path;
  f.read_only_ = false;
  return f;
}

Result<size_t> HostFile::pread_some(uint64_t offset, std::span<uint8_t> out) const {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n =
        ::pread(fd_.get(), out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("cannot read {} bytes at offset {} of '{}'", out.size(), offset, path_);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

Result<> HostFile::pread(uint64_t offset, std::span<uint8_t> out) const {
  size_t n = SKIFF_TRY(pread_some(offset, out));
  if (n != out.size())
    return fail("'{}' ends at {} while reading {} bytes at offset {}", path_, offset + n,
                out.size(), offset);
  return {};
}

Result<> HostFile::pwrite(uint64_t offset, std::span<const uint8_t> in) {
  size_t done = 0;
  while (done < in.size()) {
    ssize_t n =
        ::pwrite(fd_.get(), in.data() + done, in.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("cannot write {} bytes at offset {} of '{}'", in.size(), offset, path_);
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

Result<> HostFile::sync() {
  if (::fdatasync(fd_.get()) < 0) return fail_errno("fdatasync of '{}' failed", path_);
  return {};
}

Result<uint64_t> HostFile::size() const {
  struct stat st {};
  if (::fstat(fd_.get(), &st) < 0) return fail_errno("cannot stat '{}'", path_);
  if (S_ISBLK(st.st_mode)) {
    off_t end = ::lseek(fd_.get(), 0, SEEK_END);
    if (end < 0) return fail_errno("cannot find the size of block device '{}'", path_);
    return static_cast<uint64_t>(end);
  }
  return static_cast<uint64_t>(st.st_size);
}

Result<> HostFile::truncate(uint64_t size) {
  if (::ftruncate(fd_.get(), static_cast<off_t>(size)) < 0)
    return fail_errno("cannot resize '{}' to {} bytes", path_, size);
  return {};
}

Result<> HostFile::punch_hole(uint64_t offset, uint64_t length) {
  if (length == 0) return {};
  if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(length)) < 0) {
    // Discard is advisory: file systems without hole support keep the data.
    if (errno == EOPNOTSUPP || errno == ENOSYS) return {};
    return fail_errno("cannot punch a hole at {}+{} in '{}'", offset, length, path_);
  }
  return {};
}

Result<> HostFile::allocate(uint64_t offset, uint64_t length) {
  if (length == 0) return {};
  if (::fallocate(fd_.get(), 0, static_cast<off_t>(offset), static_cast<off_t>(length)) < 0)
    return fail_errno("cannot allocate {}+{} in '{}'", offset, length, path_);
  return {};
}

Result<> HostFile::zero_range(uint64_t offset, uint64_t length, bool may_unmap) {
  if (length == 0) return {};
  if (::fallocate(fd_.get(), FALLOC_FL_ZERO_RANGE, static_cast<off_t>(offset),
                  static_cast<off_t>(length)) == 0)
    return {};
  if (may_unmap) {
    uint64_t end = SKIFF_TRY(size());
    // Punching with KEEP_SIZE only zeroes inside the file; beyond it, extend.
    if (offset + length <= end &&
        ::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    static_cast<off_t>(offset), static_cast<off_t>(length)) == 0)
      return {};
  }
  std::vector<uint8_t> zeroes(static_cast<size_t>(std::min<uint64_t>(length, 1 << 20)));
  while (length > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(length, zeroes.size()));
    SKIFF_TRY_VOID(pwrite(offset, std::span(zeroes.data(), n)));
    offset += n;
    length -= n;
  }
  return {};
}

Result<HostFile::Extent> HostFile::extent_at(uint64_t offset, uint64_t end) const {
  off_t data = ::lseek(fd_.get(), static_cast<off_t>(offset), SEEK_DATA);
  if (data < 0) {
    if (errno == ENXIO) return Extent{false, end};  // only a hole up to EOF
    return Extent{true, end};                       // no SEEK_DATA support: report data
  }
  if (static_cast<uint64_t>(data) > offset)
    return Extent{false, std::min<uint64_t>(end, static_cast<uint64_t>(data))};
  off_t hole = ::lseek(fd_.get(), static_cast<off_t>(offset), SEEK_HOLE);
  if (hole < 0) return Extent{true, end};
  return Extent{true, std::min<uint64_t>(end, static_cast<uint64_t>(hole))};
}

}  // namespace skiff

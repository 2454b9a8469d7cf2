#include "block/host_file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace skiff {

namespace {

// Largest bounce buffer of the synchronous O_DIRECT path; bigger transfers
// go in pieces.
constexpr size_t kDirectChunk = 1 << 20;

struct FreeAligned {
  void operator()(uint8_t* p) const { std::free(p); }
};
using AlignedBytes = std::unique_ptr<uint8_t[], FreeAligned>;

Result<AlignedBytes> alloc_aligned(size_t align, size_t size) {
  void* p = nullptr;
  if (int e = ::posix_memalign(&p, align, size); e != 0)
    return fail_with(e, "cannot allocate a {}-byte aligned buffer for direct I/O", size);
  return AlignedBytes(static_cast<uint8_t*>(p));
}

// O_DIRECT alignment of an open fd (see HostFile::open).
Result<IoAlignment> probe_direct_alignment(int fd, const std::string& path) {
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN | STATX_TYPE, &stx) == 0 &&
      (stx.stx_mask & STATX_DIOALIGN)) {
    if (stx.stx_dio_offset_align == 0)
      return fail(
          "'{}' is on a file system that does not support direct=on (O_DIRECT); "
          "use direct=off or move the image (tmpfs such as /dev/shm is a common cause)",
          path);
    return IoAlignment{std::max<uint32_t>(stx.stx_dio_offset_align, 512),
                       std::max<uint32_t>(stx.stx_dio_mem_align, 1)};
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISBLK(st.st_mode)) {
    int lbs = 0;
    if (::ioctl(fd, BLKSSZGET, &lbs) == 0 && lbs >= 512)
      return IoAlignment{static_cast<uint32_t>(lbs), static_cast<uint32_t>(lbs)};
  }
  return IoAlignment{4096, 4096};  // safe for every device we know of
}

}  // namespace

Result<HostFile> HostFile::open(const std::string& path, bool read_only, bool direct) {
  HostFile f;
  int flags = read_only ? O_RDONLY : O_RDWR;
  if (direct) {
    auto fd = open_file(path, flags | O_DIRECT);
    if (!fd && fd.error().errnum == EINVAL)
      return fail(
          "'{}' is on a file system that does not support direct=on (O_DIRECT); "
          "use direct=off or move the image (tmpfs such as /dev/shm is a common cause)",
          path);
    f.fd_ = SKIFF_TRY(std::move(fd));
    f.alignment_ = SKIFF_TRY(probe_direct_alignment(f.fd_.get(), path));
  } else {
    f.fd_ = SKIFF_TRY(open_file(path, flags));
  }
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
  if (direct()) return pread_some_direct(offset, out);
  return pread_raw(offset, out);
}

Result<size_t> HostFile::pread_raw(uint64_t offset, std::span<uint8_t> out) const {
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
  if (direct()) return pwrite_direct(offset, in);
  return pwrite_raw(offset, in);
}

Result<> HostFile::pwrite_raw(uint64_t offset, std::span<const uint8_t> in) {
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

// O_DIRECT: through an aligned buffer covering whole blocks, one chunk at a
// time. The engine (block/uring_queue.h) does aligned requests zero-copy.
Result<size_t> HostFile::pread_some_direct(uint64_t offset, std::span<uint8_t> out) const {
  const uint64_t a = alignment_.offset;
  AlignedBytes buf =
      SKIFF_TRY(alloc_aligned(std::max<size_t>(a, alignment_.memory), kDirectChunk + 2 * a));
  size_t done = 0;
  while (done < out.size()) {
    uint64_t pos = offset + done;
    uint64_t start = pos / a * a;
    size_t want = std::min(out.size() - done, kDirectChunk);
    uint64_t end = (pos + want + a - 1) / a * a;
    size_t got =
        SKIFF_TRY(pread_raw(start, std::span(buf.get(), static_cast<size_t>(end - start))));
    if (got <= pos - start) break;  // EOF
    size_t n = std::min<size_t>(want, got - static_cast<size_t>(pos - start));
    std::memcpy(out.data() + done, buf.get() + (pos - start), n);
    done += n;
    if (n < want) break;
  }
  return done;
}

// Partial blocks are read, modified and written back: not atomic against a
// concurrent write to the same block from another thread (virtio-blk
// advertises the alignment as blk_size so Linux never sends such writes).
Result<> HostFile::pwrite_direct(uint64_t offset, std::span<const uint8_t> in) {
  const uint64_t a = alignment_.offset;
  AlignedBytes buf =
      SKIFF_TRY(alloc_aligned(std::max<size_t>(a, alignment_.memory), kDirectChunk + 2 * a));
  size_t done = 0;
  while (done < in.size()) {
    uint64_t pos = offset + done;
    uint64_t start = pos / a * a;
    size_t want = std::min(in.size() - done, kDirectChunk);
    uint64_t end = (pos + want + a - 1) / a * a;
    auto window = std::span(buf.get(), static_cast<size_t>(end - start));
    if (start != pos || end != pos + want) {
      // Keep the bytes around the write; past EOF they are zeroes.
      std::memset(window.data(), 0, window.size());
      if (start != pos) SKIFF_TRY(pread_raw(start, window.first(static_cast<size_t>(a))));
      if (end != pos + want && end - a >= start + (start != pos ? a : 0))
        SKIFF_TRY(pread_raw(end - a, window.last(static_cast<size_t>(a))));
    }
    std::memcpy(window.data() + (pos - start), in.data() + done, want);
    SKIFF_TRY_VOID(pwrite_raw(start, window));
    done += want;
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

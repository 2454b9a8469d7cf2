#include "block/raw_image.h"

namespace skiff {

Result<std::unique_ptr<RawImage>> RawImage::open(const std::string& path, bool read_only,
                                                 bool direct) {
  HostFile f = SKIFF_TRY(HostFile::open(path, read_only, direct));
  uint64_t size = SKIFF_TRY(f.size());
  if (direct && size % f.alignment().offset != 0)
    return fail("direct=on: the size of '{}' ({} bytes) is not a multiple of its {}-byte block",
                path, size, f.alignment().offset);
  return std::unique_ptr<RawImage>(new RawImage(std::move(f), size));
}

Result<> RawImage::create(const std::string& path, uint64_t size) {
  HostFile f = SKIFF_TRY(HostFile::create(path));
  return f.truncate(size);
}

Result<> RawImage::check_range(uint64_t offset, uint64_t length, const char* op) const {
  if (offset > size_ || length > size_ - offset)
    return fail("{} of {} bytes at offset {} is beyond the end of raw image '{}' ({} bytes)", op,
                length, offset, file_.path(), size_);
  if (file_.read_only() && std::string_view(op) != "read")
    return fail("raw image '{}' is open read-only; cannot {}", file_.path(), op);
  return {};
}

Result<> RawImage::read(uint64_t offset, std::span<uint8_t> out) {
  SKIFF_TRY_VOID(check_range(offset, out.size(), "read"));
  return file_.pread(offset, out);
}

Result<> RawImage::write(uint64_t offset, std::span<const uint8_t> in) {
  SKIFF_TRY_VOID(check_range(offset, in.size(), "write"));
  return file_.pwrite(offset, in);
}

Result<> RawImage::flush() {
  if (file_.read_only()) return {};
  return file_.sync();
}

Result<> RawImage::discard(uint64_t offset, uint64_t length) {
  SKIFF_TRY_VOID(check_range(offset, length, "discard"));
  return file_.punch_hole(offset, length);
}

Result<> RawImage::write_zeroes(uint64_t offset, uint64_t length, bool may_unmap) {
  SKIFF_TRY_VOID(check_range(offset, length, "write zeroes"));
  return file_.zero_range(offset, length, may_unmap);
}

Result<ExtentStatus> RawImage::block_status(uint64_t offset, uint64_t length) {
  SKIFF_TRY_VOID(check_range(offset, length, "read"));
  HostFile::Extent e = SKIFF_TRY(file_.extent_at(offset, offset + length));
  ExtentStatus s;
  s.length = e.end - offset;
  s.allocated = true;
  s.data = e.data;
  s.zero = !e.data;
  s.host_offset = offset;
  return s;
}

Result<> RawImage::resize(uint64_t new_size) {
  if (file_.read_only())
    return fail("raw image '{}' is open read-only; cannot resize", file_.path());
  SKIFF_TRY_VOID(file_.truncate(new_size));
  size_ = new_size;
  return {};
}

}  // namespace skiff

// The body shared by the libFuzzer target (blk_request_fuzz.cc) and the
// GCC-built mutation test (tests/virtio/fuzz_mutation_test.cc): arbitrary
// bytes become a virtio-blk request split into readable and writable
// buffers at input-chosen points, plus device limits; the request is
// parsed and, if it parses, executed against a bounds-checking in-memory
// disk. Properties: no crash or sanitizer report; a parsed request never
// reaches the disk outside its capacity, never exceeds the segment limits,
// and its status byte lies in the writable buffers.
//
// Input layout (missing bytes read as zero):
//   [0]     number of readable buffers (1 + b % 4)
//   [1]     number of writable buffers (b % 4)
//   [2]     bit 0 read-only
//   [3..18] buffer lengths, u16 each (0 allowed here: the parser must cope
//           even though Queue never hands it empty buffers)
//   [19..]  buffer contents, in order
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "block/disk_image.h"
#include "virtio/devices/blk.h"
#include "virtio/devices/blk_request.h"

namespace skiff::fuzz {

// A small disk that records any access outside its size instead of doing it.
class CheckedMemoryDisk final : public DiskImage {
 public:
  explicit CheckedMemoryDisk(uint64_t size) : bytes_(size) {}
  uint64_t size() const override { return bytes_.size(); }
  bool read_only() const override { return false; }
  std::string format() const override { return "fuzz"; }
  Result<> read(uint64_t off, std::span<uint8_t> out) override {
    if (!ok(off, out.size())) return fail("out of range");
    std::memcpy(out.data(), bytes_.data() + off, out.size());
    return {};
  }
  Result<> write(uint64_t off, std::span<const uint8_t> in) override {
    if (!ok(off, in.size())) return fail("out of range");
    std::memcpy(bytes_.data() + off, in.data(), in.size());
    return {};
  }
  Result<> flush() override { return {}; }
  Result<> discard(uint64_t off, uint64_t len) override {
    if (!ok(off, len)) return fail("out of range");
    return {};
  }
  Result<> write_zeroes(uint64_t off, uint64_t len, bool) override {
    if (!ok(off, len)) return fail("out of range");
    std::memset(bytes_.data() + off, 0, len);
    return {};
  }
  Result<ExtentStatus> block_status(uint64_t, uint64_t len) override {
    return ExtentStatus{.length = len};
  }
  bool violated = false;

 private:
  bool ok(uint64_t off, uint64_t len) {
    bool good = off <= bytes_.size() && len <= bytes_.size() - off;
    if (!good) violated = true;
    return good;
  }
  std::vector<uint8_t> bytes_;
};

// Returns -1 if a property failed; otherwise 0 if the request did not
// parse, 1 if parsing decided its status, 2 if it was executed.
inline int exercise_blk_request(const uint8_t* data, size_t size) {
  auto byte = [&](size_t i) -> uint8_t { return i < size ? data[i] : 0; };
  size_t n_read = 1 + byte(0) % 4;
  size_t n_write = byte(1) % 4;
  constexpr size_t kHeader = 19;
  std::vector<uint8_t> storage(size > kHeader ? size - kHeader : 0);
  if (!storage.empty()) std::memcpy(storage.data(), data + kHeader, storage.size());
  std::vector<std::span<uint8_t>> bufs;
  size_t pos = 0;
  for (size_t i = 0; i < n_read + n_write; ++i) {
    size_t want = static_cast<size_t>(byte(3 + 2 * i) | byte(4 + 2 * i) << 8);
    size_t len = std::min(want, storage.size() - pos);
    bufs.push_back(std::span(storage).subspan(pos, len));
    pos += len;
  }
  auto readable = std::span<const std::span<uint8_t>>(bufs).first(n_read);
  auto writable = std::span<const std::span<uint8_t>>(bufs).subspan(n_read);

  constexpr uint64_t kDiskBytes = 64 * 512;
  virtio::BlkLimits limits;
  limits.capacity_sectors = kDiskBytes / 512;
  limits.read_only = byte(2) & 1;
  limits.max_discard_sectors = 16;
  limits.max_write_zeroes_sectors = 16;
  limits.max_discard_segments = 4;
  limits.max_write_zeroes_segments = 4;
  auto req = virtio::parse_blk_request(readable, writable, limits);
  if (!req) return 0;

  // The status byte is the last writable byte.
  if (writable.empty()) return -1;
  bool status_inside = false;
  for (auto s : writable)
    if (!s.empty() && req->status >= s.data() && req->status < s.data() + s.size())
      status_inside = true;
  if (!status_inside) return -1;
  if (req->num_segments > virtio::kBlkMaxSegments || req->num_segments > 4) return -1;
  if (req->early_status) return 1;

  CheckedMemoryDisk disk(kDiskBytes);
  virtio::DiskImageExecutor exec(disk);
  (void)exec.execute(*req, readable, writable);
  *req->status = 0;
  return disk.violated ? -1 : 2;
}

}  // namespace skiff::fuzz

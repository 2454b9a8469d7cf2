// DiskImage: what a virtual disk front end (virtio-blk, skiff-img) needs from
// an image format. Raw and qcow2 implement it; they know nothing about
// virtio (STYLE.md §4). Offsets and lengths are in bytes of the virtual disk.
// Callers check guest-supplied ranges against size() before calling; images
// check again and fail the request, never read or write outside their file.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "base/result.h"

namespace skiff {

// What one extent of the virtual disk holds (for map, convert, compare).
struct ExtentStatus {
  uint64_t length = 0;       // bytes from the queried offset with this status
  bool allocated = false;    // data comes from this image (not backing / unallocated)
  bool zero = false;         // reads as zeroes
  bool data = false;         // has data somewhere in the chain
  int depth = 0;             // 0 = this image, 1 = its backing file, ...
  uint64_t host_offset = 0;  // offset in the file that holds it (0 if none)
  bool compressed = false;
};

class DiskImage;

// An I/O engine's claim on the host bytes of one mapped extent (see
// DiskImage::map_extent): while it lives, the image does not give those host
// bytes to anything else (qcow2 defers freeing a discarded cluster until
// its last pin is gone). Move-only; it must not outlive its image. Empty
// for images whose mapping never changes (raw).
class ExtentPin {
 public:
  ExtentPin() = default;
  ExtentPin(DiskImage* image, uint32_t id) : image_(image), id_(id) {}
  ExtentPin(ExtentPin&& o) noexcept : image_(o.image_), id_(o.id_) { o.image_ = nullptr; }
  ExtentPin& operator=(ExtentPin&& o) noexcept {
    if (this != &o) {
      reset();
      image_ = o.image_;
      id_ = o.id_;
      o.image_ = nullptr;
    }
    return *this;
  }
  ExtentPin(const ExtentPin&) = delete;
  ExtentPin& operator=(const ExtentPin&) = delete;
  ~ExtentPin() { reset(); }
  // The engine's transfer is over (completed or cancelled and waited for).
  inline void reset();
  [[nodiscard]] bool held() const { return image_ != nullptr; }

 private:
  DiskImage* image_ = nullptr;
  uint32_t id_ = 0;
};

// Where some virtual-disk bytes live in a host file (see map_extent), and
// the pin that keeps them there until the transfer is done.
struct HostExtent {
  int fd = -1;
  uint64_t offset = 0;
  ExtentPin pin{};
};

// What O_DIRECT demands of a transfer on an image's file (direct=on):
// file offsets and lengths multiples of `offset`, every buffer address a
// multiple of `memory` and every buffer length a multiple of `offset`.
// 1/1: buffered I/O, anything goes.
struct IoAlignment {
  uint32_t offset = 1;
  uint32_t memory = 1;
  [[nodiscard]] bool any() const { return offset > 1 || memory > 1; }
};

class DiskImage {
 public:
  virtual ~DiskImage() = default;

  [[nodiscard]] virtual uint64_t size() const = 0;
  [[nodiscard]] virtual bool read_only() const = 0;
  [[nodiscard]] virtual std::string format() const = 0;  // "raw", "qcow2"

  [[nodiscard]] virtual Result<> read(uint64_t offset, std::span<uint8_t> out) = 0;
  [[nodiscard]] virtual Result<> write(uint64_t offset, std::span<const uint8_t> in) = 0;
  // Makes every acknowledged write durable (data and metadata on stable storage).
  [[nodiscard]] virtual Result<> flush() = 0;
  // The range's contents become unspecified (zeroes or old data); space may be freed.
  [[nodiscard]] virtual Result<> discard(uint64_t offset, uint64_t length) = 0;
  // The range reads as zeroes afterwards; may_unmap allows freeing the space.
  [[nodiscard]] virtual Result<> write_zeroes(uint64_t offset, uint64_t length, bool may_unmap) = 0;
  [[nodiscard]] virtual Result<ExtentStatus> block_status(uint64_t offset, uint64_t length) = 0;

  // --- for I/O engines that move the data themselves (virtio-blk over
  // io_uring). Defaults: nothing is mapped; every request goes through the
  // synchronous calls above.

  // Whether map_extent() can ever return a mapping (worth setting up an
  // engine for this image).
  [[nodiscard]] virtual bool maps_extents() const { return false; }
  // The host file holding [offset, offset + length) as one run that can be
  // read, or with `write` overwritten in place, without any metadata
  // change; nullopt when only read()/write() can serve it (unallocated or
  // compressed qcow2 clusters, backing files, copy-on-write). Raw: always;
  // qcow2: allocated data clusters (for writes: ones with QCOW_OFLAG_COPIED).
  // The range must already be checked against size(). The caller keeps the
  // returned pin until its transfer is over (see ExtentPin): a discard in
  // the meantime must not let the image reuse those host bytes.
  [[nodiscard]] virtual std::optional<HostExtent> map_extent(uint64_t /*offset*/,
                                                             uint64_t /*length*/, bool /*write*/) {
    return std::nullopt;
  }
  // The fd whose byte N is virtual byte N (raw), or -1. With it, flush() is
  // fdatasync(fd), discard() is a punched hole and write_zeroes() is
  // FALLOC_FL_ZERO_RANGE of the same range, so an engine may issue those.
  [[nodiscard]] virtual int linear_fd() const { return -1; }
  // Alignment the mapped fds need (direct=on); see IoAlignment.
  [[nodiscard]] virtual IoAlignment io_alignment() const { return {}; }

 protected:
  // Pin `id` (handed out by map_extent) is released; called from any thread.
  friend class ExtentPin;
  virtual void release_extent(uint32_t /*id*/) {}
};

void ExtentPin::reset() {
  if (image_ != nullptr) std::exchange(image_, nullptr)->release_extent(id_);
}

}  // namespace skiff

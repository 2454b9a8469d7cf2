// RawImage: a raw disk image file (or block device). Virtual disk byte N is
// file byte N. flush is fdatasync, discard punches holes, write_zeroes uses
// FALLOC_FL_ZERO_RANGE, block_status uses SEEK_DATA/SEEK_HOLE. It maps
// every range 1:1 for I/O engines (map_extent, linear_fd).
#pragma once

#include <memory>
#include <string>

#include "block/disk_image.h"
#include "block/host_file.h"

namespace skiff {

class RawImage final : public DiskImage {
 public:
  // `direct`: O_DIRECT (see HostFile::open); the file size must then be a
  // multiple of the probed alignment so no transfer reaches past EOF.
  [[nodiscard]] static Result<std::unique_ptr<RawImage>> open(const std::string& path,
                                                              bool read_only, bool direct = false);
  // Creates (truncating) a sparse raw file of `size` bytes.
  [[nodiscard]] static Result<> create(const std::string& path, uint64_t size);

  [[nodiscard]] uint64_t size() const override { return size_; }
  [[nodiscard]] bool read_only() const override { return file_.read_only(); }
  [[nodiscard]] std::string format() const override { return "raw"; }
  [[nodiscard]] Result<> read(uint64_t offset, std::span<uint8_t> out) override;
  [[nodiscard]] Result<> write(uint64_t offset, std::span<const uint8_t> in) override;
  [[nodiscard]] Result<> flush() override;
  [[nodiscard]] Result<> discard(uint64_t offset, uint64_t length) override;
  [[nodiscard]] Result<> write_zeroes(uint64_t offset, uint64_t length, bool may_unmap) override;
  [[nodiscard]] Result<ExtentStatus> block_status(uint64_t offset, uint64_t length) override;
  // Virtual byte N is file byte N: everything can go straight to the file.
  [[nodiscard]] bool maps_extents() const override { return true; }
  [[nodiscard]] std::optional<HostExtent> map_extent(uint64_t offset, uint64_t /*length*/,
                                                     bool write) override {
    if (write && file_.read_only()) return std::nullopt;
    return HostExtent{file_.fd(), offset};
  }
  [[nodiscard]] int linear_fd() const override { return file_.read_only() ? -1 : file_.fd(); }
  [[nodiscard]] IoAlignment io_alignment() const override { return file_.alignment(); }

  // Changes the file size (skiff-img resize).
  [[nodiscard]] Result<> resize(uint64_t new_size);

 private:
  explicit RawImage(HostFile f, uint64_t size) : file_(std::move(f)), size_(size) {}
  [[nodiscard]] Result<> check_range(uint64_t offset, uint64_t length, const char* op) const;

  HostFile file_;
  uint64_t size_;
};

}  // namespace skiff

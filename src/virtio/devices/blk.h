// VirtioBlock: virtio-blk (virtio 1.2 §5.2) over a DiskImage backend.
//
// Offered: VERSION_1, EVENT_IDX, INDIRECT_DESC, SEG_MAX, BLK_SIZE, FLUSH,
// TOPOLOGY, DISCARD, WRITE_ZEROES, RO (read-only disk), MQ (num_queues > 1).
// Requests: IN, OUT, FLUSH (DiskImage::flush: durability is the backend's
// job), GET_ID (serial, 20 bytes, NUL-padded, no NUL if full), DISCARD,
// WRITE_ZEROES (validated segments, blk_request.h). Everything else is
// answered VIRTIO_BLK_S_UNSUPP. Which malformed requests are statuses and
// which put the device into NEEDS_RESET is decided in blk_request.h.
//
// Not offered: SIZE_MAX (no per-segment limit here), GEOMETRY (legacy),
// CONFIG_WCE (the cache is always write-back; the driver flushes),
// SECURE_ERASE, LIFETIME, ZONED. capacity is the image size rounded down to
// 512 bytes; a partial last sector is not reachable.
//
// Execution sits behind BlkExecutor so the synchronous DiskImage calls can
// become io_uring submissions later without touching parsing or the queue
// loop.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "block/disk_image.h"
#include "virtio/device.h"
#include "virtio/devices/blk_request.h"

namespace skiff::virtio {

inline constexpr uint32_t kVirtioIdBlock = 2;  // VIRTIO_ID_BLOCK

// Carries out one parsed request (early_status unset) whose data lives in
// the chain's buffers; returns a VIRTIO_BLK_S_* status. Synchronous for
// now: the io_uring executor will split this into submit + completion.
class BlkExecutor {
 public:
  virtual ~BlkExecutor() = default;
  [[nodiscard]] virtual uint8_t execute(const BlkRequest& req, BufferList readable,
                                        BufferList writable) = 0;
};

// BlkExecutor over DiskImage's synchronous calls.
class DiskImageExecutor final : public BlkExecutor {
 public:
  explicit DiskImageExecutor(DiskImage& disk) : disk_(disk) {}
  [[nodiscard]] uint8_t execute(const BlkRequest& req, BufferList readable,
                                BufferList writable) override;

 private:
  DiskImage& disk_;
};

struct BlkOptions {
  std::string serial;      // GET_ID; truncated to 20 bytes
  bool read_only = false;  // in addition to a read-only image
  uint16_t num_queues = 1;
  uint16_t queue_size = 256;
  uint32_t max_discard_sectors = 1u << 22;  // 2 GiB per segment
  uint32_t max_write_zeroes_sectors = 1u << 22;
};

// Per-queue counters for the API (read from another thread: atomics).
struct BlkQueueStats {
  std::atomic<uint64_t> read_ops{0};
  std::atomic<uint64_t> read_bytes{0};
  std::atomic<uint64_t> write_ops{0};
  std::atomic<uint64_t> write_bytes{0};
  std::atomic<uint64_t> flush_ops{0};
  std::atomic<uint64_t> discard_ops{0};
  std::atomic<uint64_t> write_zeroes_ops{0};
  std::atomic<uint64_t> errors{0};  // requests answered IOERR or UNSUPP
};

class VirtioBlock final : public VirtioDevice {
 public:
  [[nodiscard]] static Result<std::unique_ptr<VirtioBlock>> create(std::unique_ptr<DiskImage> disk,
                                                                   BlkOptions options);

  [[nodiscard]] const BlkLimits& limits() const { return limits_; }
  [[nodiscard]] const BlkQueueStats& stats(uint16_t queue) const { return stats_[queue]; }
  [[nodiscard]] DiskImage& disk() { return *disk_; }

 protected:
  [[nodiscard]] Result<> handle_queue(uint16_t index, Queue& queue) override;

 private:
  VirtioBlock(std::unique_ptr<DiskImage> disk, BlkOptions options, uint64_t features);
  void build_config();
  [[nodiscard]] uint8_t run(const BlkRequest& req, const DescriptorChain& chain,
                            BlkQueueStats& stats, uint32_t& written);

  std::unique_ptr<DiskImage> disk_;
  BlkOptions options_;
  BlkLimits limits_;
  std::unique_ptr<BlkExecutor> executor_;
  std::unique_ptr<BlkQueueStats[]> stats_;
  std::vector<DescriptorChain> chains_;  // one reusable chain per queue
};

}  // namespace skiff::virtio

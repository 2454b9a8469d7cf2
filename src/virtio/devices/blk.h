// VirtioBlock: virtio-blk (virtio 1.2 §5.2) over a DiskImage backend.
//
// Offered: VERSION_1, EVENT_IDX, INDIRECT_DESC, SEG_MAX, BLK_SIZE, FLUSH,
// TOPOLOGY, DISCARD, WRITE_ZEROES, RO (read-only disk), MQ (num_queues > 1),
// RING_RESET (when the transport has a per-queue reset: virtio-pci).
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
// Execution (virtio 1.2 §5.2.6, issue 3): asynchronous over io_uring where
// the image allows it, synchronous otherwise.
//   - Each queue has its own UringQueue (block/uring_queue.h, depth = queue
//     size, no sharing between queue threads); its completion eventfd is the
//     queue's BackendEvent, so the transport calls process_queue(q) both on
//     a driver kick and on completions. handle_queue() first reaps finished
//     requests (status byte, used ring, one interrupt), then starts new ones
//     and submits them with one io_uring_enter.
//   - Async: IN/OUT whose range the image maps to one host-file run
//     (DiskImage::map_extent: always for raw; for qcow2 a run of allocated
//     data clusters, for writes only ones it owns alone, i.e. no metadata
//     change), as read(v)/write(v) straight on the guest buffers; and for raw
//     images FLUSH (fdatasync, IOSQE_IO_DRAIN: after the
//     writes submitted before it on that queue), DISCARD (punch hole) and
//     WRITE_ZEROES (zero range). The chain's head index names the in-flight
//     slot; a head made available again while in flight is a driver error
//     (NEEDS_RESET).
//   - Synchronous (DiskImageExecutor, on the queue's thread): GET_ID, early
//     statuses, qcow2 requests that touch metadata (allocation, copy-on-write,
//     backing files, zero/compressed clusters) and qcow2 FLUSH/DISCARD/
//     WRITE_ZEROES (other queues wait only for the image's lock), O_DIRECT
//     requests whose offset or length is not a multiple of the block size
//     (read-modify-write in HostFile), and everything when io_uring cannot be
//     set up (logged once). A synchronous FLUSH first waits for the queue's
//     requests in flight.
//   - direct=on: aligned guest buffers go to the O_DIRECT fd as they are;
//     unaligned ones through a per-slot bounce buffer (counted in
//     BlkQueueStats::bounced). blk_size reports the O_DIRECT block size.
//   - reset() cancels what the kernel can cancel and waits for the rest, and
//     drops their completions; so does a queue reset (VIRTIO_F_RING_RESET,
//     virtio 1.2 §2.6.1, offered behind virtio-pci only), for that queue's
//     ring alone while the other queues keep running; stop_queue()
//     (vhost-user GET_VRING_BASE) waits and completes them. Either way
//     nothing writes guest memory afterwards.
//   - Mapped extents are pinned (DiskImage::map_extent, ExtentPin) from the
//     submission until the request's completion is reaped or the ring was
//     cancelled and waited for: a qcow2 DISCARD / WRITE_ZEROES from any
//     queue meanwhile cannot get the host clusters reused for other data.
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
// the chain's buffers; returns a VIRTIO_BLK_S_* status. The synchronous
// path (see above for when it is used).
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
  bool use_io_uring = true;  // false: every request synchronously (benchmarks)
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
  std::atomic<uint64_t> errors{0};     // requests answered IOERR or UNSUPP
  std::atomic<uint64_t> async_ops{0};  // requests that went through io_uring
  std::atomic<uint64_t> bounced{0};    // of those, through a bounce buffer (direct=on)
};

class VirtioBlock final : public VirtioDevice {
 public:
  [[nodiscard]] static Result<std::unique_ptr<VirtioBlock>> create(std::unique_ptr<DiskImage> disk,
                                                                   BlkOptions options);

  [[nodiscard]] const BlkLimits& limits() const { return limits_; }
  [[nodiscard]] const BlkQueueStats& stats(uint16_t queue) const { return stats_[queue]; }
  [[nodiscard]] DiskImage& disk() { return *disk_; }
  ~VirtioBlock() override;

  // One completion eventfd per queue that has an io_uring.
  [[nodiscard]] std::vector<BackendEvent> backend_events() const override;
  // Requests of queue `index` the kernel still holds.
  [[nodiscard]] uint32_t in_flight(uint16_t index) const;

 protected:
  [[nodiscard]] Result<> handle_queue(uint16_t index, Queue& queue) override;
  void on_reset() override;
  void on_queue_stop(uint16_t index, Queue& queue) override;
  void on_queue_reset(uint16_t index, Queue& queue) override;
  // Each queue's requests live in its own QueueState and ring: one queue
  // can be cancelled and restarted alone (on_queue_reset).
  [[nodiscard]] bool supports_queue_reset() const override { return true; }

 private:
  struct QueueState;
  VirtioBlock(std::unique_ptr<DiskImage> disk, BlkOptions options, uint64_t features);
  void build_config();
  void setup_rings();
  [[nodiscard]] uint8_t run(const BlkRequest& req, const DescriptorChain& chain,
                            BlkQueueStats& stats, uint32_t& written);
  // Starts `req` on the queue's ring; false: run it synchronously.
  [[nodiscard]] Result<bool> start_async(QueueState& qs, const BlkRequest& req,
                                         const DescriptorChain& chain, BlkQueueStats& stats);
  // Answers the ring's finished requests; true if any was used.
  [[nodiscard]] Result<bool> finish(QueueState& qs, Queue& queue, BlkQueueStats& stats,
                                    size_t count);

  std::unique_ptr<DiskImage> disk_;
  BlkOptions options_;
  BlkLimits limits_;
  std::unique_ptr<BlkExecutor> executor_;
  std::unique_ptr<BlkQueueStats[]> stats_;
  std::vector<std::unique_ptr<QueueState>> queues_;
};

}  // namespace skiff::virtio

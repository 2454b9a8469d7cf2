#include "virtio/devices/blk.h"

#include <linux/virtio_blk.h>

#include <algorithm>
#include <cstring>

namespace skiff::virtio {

static_assert(sizeof(virtio_blk_config) == 72, "virtio 1.2 §5.2.4 config layout");

uint8_t DiskImageExecutor::execute(const BlkRequest& req, BufferList readable,
                                   BufferList writable) {
  uint64_t offset = req.sector * kSectorSize;  // sector <= capacity: no overflow
  bool ok = true;
  switch (req.type) {
    case VIRTIO_BLK_T_IN:
      ok = for_each_piece(writable, 0, req.data_len, [&](std::span<uint8_t> piece) {
        if (!disk_.read(offset, piece)) return false;
        offset += piece.size();
        return true;
      });
      break;
    case VIRTIO_BLK_T_OUT:
      ok = for_each_piece(readable, kBlkHeaderSize, req.data_len, [&](std::span<uint8_t> piece) {
        if (!disk_.write(offset, piece)) return false;
        offset += piece.size();
        return true;
      });
      break;
    case VIRTIO_BLK_T_FLUSH:
      ok = disk_.flush().has_value();
      break;
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
      for (uint32_t i = 0; i < req.num_segments && ok; ++i) {
        const BlkSegment& s = req.segments[i];
        uint64_t start = s.sector * kSectorSize;
        uint64_t len = uint64_t{s.num_sectors} * kSectorSize;
        ok = req.type == VIRTIO_BLK_T_DISCARD ? disk_.discard(start, len).has_value()
                                              : disk_.write_zeroes(start, len, s.unmap).has_value();
      }
      break;
    default:
      return VIRTIO_BLK_S_UNSUPP;
  }
  return ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
}

Result<std::unique_ptr<VirtioBlock>> VirtioBlock::create(std::unique_ptr<DiskImage> disk,
                                                         BlkOptions options) {
  if (!disk) return fail("virtio-blk needs a disk image");
  if (options.num_queues == 0) return fail("virtio-blk needs at least one queue");
  if (options.queue_size < 2 || options.queue_size > kMaxQueueSize ||
      (options.queue_size & (options.queue_size - 1)) != 0)
    return fail("virtio-blk queue_size {} is not a power of 2 in [2, 32768]", options.queue_size);
  if (disk->size() < kSectorSize) return fail("disk image is smaller than one 512-byte sector");
  if (disk->read_only()) options.read_only = true;

  uint64_t features = feature_bit(VIRTIO_BLK_F_SEG_MAX) | feature_bit(VIRTIO_BLK_F_BLK_SIZE) |
                      feature_bit(VIRTIO_BLK_F_FLUSH) | feature_bit(VIRTIO_BLK_F_TOPOLOGY) |
                      feature_bit(VIRTIO_BLK_F_DISCARD) | feature_bit(VIRTIO_BLK_F_WRITE_ZEROES);
  if (options.read_only) features |= feature_bit(VIRTIO_BLK_F_RO);
  if (options.num_queues > 1) features |= feature_bit(VIRTIO_BLK_F_MQ);
  return std::unique_ptr<VirtioBlock>(
      new VirtioBlock(std::move(disk), std::move(options), features));
}

VirtioBlock::VirtioBlock(std::unique_ptr<DiskImage> disk, BlkOptions options, uint64_t features)
    : VirtioDevice(kVirtioIdBlock, "blk", features, options.num_queues, options.queue_size),
      disk_(std::move(disk)),
      options_(std::move(options)),
      executor_(std::make_unique<DiskImageExecutor>(*disk_)),
      stats_(std::make_unique<BlkQueueStats[]>(options_.num_queues)),
      chains_(options_.num_queues) {
  limits_.capacity_sectors = disk_->size() / kSectorSize;
  limits_.read_only = options_.read_only;
  limits_.max_discard_sectors = options_.max_discard_sectors;
  limits_.max_write_zeroes_sectors = options_.max_write_zeroes_sectors;
  build_config();
}

void VirtioBlock::build_config() {
  // §5.2.4; fields are little-endian (x86 host, see queue.cc).
  virtio_blk_config c{};
  c.capacity = limits_.capacity_sectors;
  // Two descriptors go to the header and the status (§5.2.4 seg_max).
  c.seg_max = options_.queue_size - 2u;
  c.blk_size = kSectorSize;
  c.physical_block_exp = 0;
  c.alignment_offset = 0;
  c.min_io_size = 1;
  c.opt_io_size = 0;
  c.num_queues = options_.num_queues;
  c.max_discard_sectors = limits_.max_discard_sectors;
  c.max_discard_seg = limits_.max_discard_segments;
  c.discard_sector_alignment = 1;
  c.max_write_zeroes_sectors = limits_.max_write_zeroes_sectors;
  c.max_write_zeroes_seg = limits_.max_write_zeroes_segments;
  c.write_zeroes_may_unmap = 1;
  auto& bytes = config_bytes();
  bytes.resize(sizeof c);
  std::memcpy(bytes.data(), &c, sizeof c);
}

uint8_t VirtioBlock::run(const BlkRequest& req, const DescriptorChain& chain, BlkQueueStats& stats,
                         uint32_t& written) {
  written = 0;
  if (req.early_status) return *req.early_status;
  if (req.type == VIRTIO_BLK_T_GET_ID) {
    // §5.2.6: NUL-padded, no terminator when the serial is 20 bytes long.
    std::array<uint8_t, kBlkIdBytes> id{};
    std::memcpy(id.data(), options_.serial.data(), std::min(options_.serial.size(), id.size()));
    copy_to_buffers(chain.writable(), 0, id);
    written = kBlkIdBytes;
    return VIRTIO_BLK_S_OK;
  }
  uint8_t status = executor_->execute(req, chain.readable(), chain.writable());
  if (status != VIRTIO_BLK_S_OK) return status;
  switch (req.type) {
    case VIRTIO_BLK_T_IN:
      stats.read_ops.fetch_add(1, std::memory_order_relaxed);
      stats.read_bytes.fetch_add(req.data_len, std::memory_order_relaxed);
      written = static_cast<uint32_t>(req.data_len);  // chain total <= 2^32 (queue.cc)
      break;
    case VIRTIO_BLK_T_OUT:
      stats.write_ops.fetch_add(1, std::memory_order_relaxed);
      stats.write_bytes.fetch_add(req.data_len, std::memory_order_relaxed);
      break;
    case VIRTIO_BLK_T_FLUSH:
      stats.flush_ops.fetch_add(1, std::memory_order_relaxed);
      break;
    case VIRTIO_BLK_T_DISCARD:
      stats.discard_ops.fetch_add(1, std::memory_order_relaxed);
      break;
    case VIRTIO_BLK_T_WRITE_ZEROES:
      stats.write_zeroes_ops.fetch_add(1, std::memory_order_relaxed);
      break;
    default:
      break;
  }
  return status;
}

Result<> VirtioBlock::handle_queue(uint16_t index, Queue& queue) {
  DescriptorChain& chain = chains_[index];
  BlkQueueStats& stats = stats_[index];
  bool used_any = false;
  for (;;) {
    bool got = SKIFF_TRY(queue.pop_into(chain));
    if (!got) break;
    BlkRequest req = SKIFF_TRY(parse_blk_request(chain.readable(), chain.writable(), limits_));
    uint32_t written = 0;
    uint8_t status = run(req, chain, stats, written);
    if (status != VIRTIO_BLK_S_OK) {
      stats.errors.fetch_add(1, std::memory_order_relaxed);
      written = 0;
    }
    *req.status = status;
    // Used length: data written into the driver's buffers plus the status.
    SKIFF_TRY_VOID(queue.add_used(chain.head(), written + 1));
    used_any = true;
  }
  if (used_any) signal_used(index);
  return {};
}

}  // namespace skiff::virtio

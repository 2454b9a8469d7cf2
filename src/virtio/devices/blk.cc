#include "virtio/devices/blk.h"

#include <linux/falloc.h>
#include <linux/virtio_blk.h>

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "block/uring_queue.h"

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

// A request on a queue's ring, by head index.
struct InFlight {
  BlkRequest req;
  ExtentPin pin;  // IN/OUT on a mapped extent: held until the transfer is over
};

struct VirtioBlock::QueueState {
  ~QueueState() {
    // The kernel lets go of the mapped extents before their pins go.
    ring.reset();
  }
  // The ring was cancelled and waited for: no slot is in flight any more.
  void drop_pins() {
    for (InFlight& f : in_flight) f.pin.reset();
  }

  DescriptorChain chain;             // reusable, no allocation once warm
  std::unique_ptr<UringQueue> ring;  // nullptr: synchronous only
  std::vector<InFlight> in_flight;   // indexed by head
  std::vector<UringQueue::Completion> done;
  std::vector<iovec> iov;  // scratch for start_async
};

namespace {

// Counts a successful request; returns the bytes written into the driver's
// buffers (IN data).
uint32_t account(const BlkRequest& req, BlkQueueStats& stats) {
  switch (req.type) {
    case VIRTIO_BLK_T_IN:
      stats.read_ops.fetch_add(1, std::memory_order_relaxed);
      stats.read_bytes.fetch_add(req.data_len, std::memory_order_relaxed);
      return static_cast<uint32_t>(req.data_len);  // chain total <= 2^32 (queue.cc)
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
  return 0;
}

}  // namespace

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
      stats_(std::make_unique<BlkQueueStats[]>(options_.num_queues)) {
  limits_.capacity_sectors = disk_->size() / kSectorSize;
  limits_.read_only = options_.read_only;
  limits_.max_discard_sectors = options_.max_discard_sectors;
  limits_.max_write_zeroes_sectors = options_.max_write_zeroes_sectors;
  for (uint16_t i = 0; i < options_.num_queues; ++i)
    queues_.push_back(std::make_unique<QueueState>());
  build_config();
  setup_rings();
}

VirtioBlock::~VirtioBlock() {
  // The rings wait for their requests before the image (and the guest
  // memory the transport owns) go away.
  queues_.clear();
}

void VirtioBlock::setup_rings() {
  if (!options_.use_io_uring) return;
  // Only images that map something (raw, qcow2) benefit.
  if (!disk_->maps_extents() && disk_->linear_fd() < 0) return;
  for (uint16_t i = 0; i < queues_.size(); ++i) {
    auto ring = UringQueue::create(options_.queue_size, fmt::format("blk queue {}", i));
    if (!ring) {
      // A host without io_uring (disabled by sysctl or seccomp) still works.
      LOG_WARN("virtio-blk: io_uring unavailable, requests run synchronously: {}",
               ring.error().what());
      for (auto& q : queues_) q->ring.reset();
      return;
    }
    QueueState& qs = *queues_[i];
    qs.ring = std::move(*ring);
    qs.in_flight.resize(options_.queue_size);
    qs.done.resize(options_.queue_size);
  }
}

std::vector<BackendEvent> VirtioBlock::backend_events() const {
  std::vector<BackendEvent> events;
  for (uint16_t i = 0; i < queues_.size(); ++i)
    if (queues_[i]->ring) events.push_back(BackendEvent{queues_[i]->ring->event_fd(), i});
  return events;
}

uint32_t VirtioBlock::in_flight(uint16_t index) const {
  if (index >= queues_.size() || !queues_[index]->ring) return 0;
  return queues_[index]->ring->in_flight();
}

void VirtioBlock::build_config() {
  // §5.2.4; fields are little-endian (x86 host, see queue.cc).
  virtio_blk_config c{};
  c.capacity = limits_.capacity_sectors;
  // Two descriptors go to the header and the status (§5.2.4 seg_max).
  c.seg_max = options_.queue_size - 2u;
  // direct=on: the O_DIRECT block size, so the driver's requests stay
  // aligned (capacity stays in 512-byte sectors, §5.2.4).
  c.blk_size = std::max<uint32_t>(kSectorSize, disk_->io_alignment().offset);
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
  if (status == VIRTIO_BLK_S_OK) written = account(req, stats);
  return status;
}

Result<bool> VirtioBlock::start_async(QueueState& qs, const BlkRequest& req,
                                      const DescriptorChain& chain, BlkQueueStats& stats) {
  if (req.early_status) return false;
  UringQueue& ring = *qs.ring;
  uint16_t head = chain.head();
  if (head >= ring.slots()) return false;  // queue size above max: cannot happen
  if (ring.busy(head))
    return fail("the driver made chain {} available again while it is in flight", head);
  switch (req.type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT: {
      if (req.data_len == 0) return false;
      bool write = req.type == VIRTIO_BLK_T_OUT;
      uint64_t offset = req.sector * kSectorSize;
      IoAlignment align = disk_->io_alignment();
      // O_DIRECT needs whole blocks; others go the read-modify-write way.
      if ((offset | req.data_len) % align.offset != 0) return false;
      auto at = disk_->map_extent(offset, req.data_len, write);
      if (!at) return false;
      qs.iov.clear();
      auto add = [&](std::span<uint8_t> piece) {
        qs.iov.push_back(iovec{piece.data(), piece.size()});
        return true;
      };
      if (write)
        for_each_piece(chain.readable(), kBlkHeaderSize, req.data_len, add);
      else
        for_each_piece(chain.writable(), 0, req.data_len, add);
      auto bounced = ring.start_rw(head, write, *at, qs.iov, align);
      if (!bounced) return false;  // no bounce buffer: do it synchronously
      if (*bounced) stats.bounced.fetch_add(1, std::memory_order_relaxed);
      qs.in_flight[head].pin = std::move(at->pin);
      break;
    }
    case VIRTIO_BLK_T_FLUSH: {
      int fd = disk_->linear_fd();
      if (fd < 0 || !ring.start_flush(head, fd)) return false;
      break;
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES: {
      int fd = disk_->linear_fd();
      if (fd < 0) return false;
      std::array<UringQueue::Range, kBlkMaxSegments> ranges;
      for (uint32_t i = 0; i < req.num_segments; ++i)
        ranges[i] = {req.segments[i].sector * kSectorSize,
                     uint64_t{req.segments[i].num_sectors} * kSectorSize};
      // KEEP_SIZE: ranges are inside the image (checked by the parser).
      int mode = req.type == VIRTIO_BLK_T_DISCARD ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                                                  : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
      if (!ring.start_fallocate(head, fd, mode, std::span(ranges).first(req.num_segments)))
        return false;
      break;
    }
    default:
      return false;  // GET_ID and the rest: synchronous
  }
  qs.in_flight[head].req = req;
  stats.async_ops.fetch_add(1, std::memory_order_relaxed);
  return true;
}

Result<bool> VirtioBlock::finish(QueueState& qs, Queue& queue, BlkQueueStats& stats, size_t count) {
  // The transfers are over: the image may free what they used (and must,
  // even if answering one of them fails below).
  for (size_t i = 0; i < count; ++i) qs.in_flight[qs.done[i].slot].pin.reset();
  for (size_t i = 0; i < count; ++i) {
    auto [slot, result] = qs.done[i];
    const BlkRequest& req = qs.in_flight[slot].req;
    uint8_t status = result == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
    if (result == -EOPNOTSUPP && req.type == VIRTIO_BLK_T_DISCARD) {
      status = VIRTIO_BLK_S_OK;  // discard is advisory (HostFile::punch_hole)
    } else if ((result == -EOPNOTSUPP || result == -EINVAL) &&
               req.type == VIRTIO_BLK_T_WRITE_ZEROES) {
      // No FALLOC_FL_ZERO_RANGE here: the image's own fallbacks.
      bool ok = true;
      for (uint32_t s = 0; s < req.num_segments && ok; ++s)
        ok = disk_
                 ->write_zeroes(req.segments[s].sector * kSectorSize,
                                uint64_t{req.segments[s].num_sectors} * kSectorSize,
                                req.segments[s].unmap)
                 .has_value();
      status = ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
    }
    uint32_t written = 0;
    if (status == VIRTIO_BLK_S_OK)
      written = account(req, stats);
    else
      stats.errors.fetch_add(1, std::memory_order_relaxed);
    *req.status = status;
    SKIFF_TRY_VOID(queue.add_used(static_cast<uint16_t>(slot), written + 1));
  }
  return count > 0;
}

Result<> VirtioBlock::handle_queue(uint16_t index, Queue& queue) {
  QueueState& qs = *queues_[index];
  BlkQueueStats& stats = stats_[index];
  DescriptorChain& chain = qs.chain;
  bool used_any = false;
  // Completions first: their slots (heads) may be reused by new chains.
  if (qs.ring) used_any |= SKIFF_TRY(finish(qs, queue, stats, qs.ring->reap(qs.done)));
  for (;;) {
    bool got = SKIFF_TRY(queue.pop_into(chain));
    if (!got) break;
    BlkRequest req = SKIFF_TRY(parse_blk_request(chain.readable(), chain.writable(), limits_));
    if (qs.ring) {
      if (SKIFF_TRY(start_async(qs, req, chain, stats))) continue;
      if (req.type == VIRTIO_BLK_T_FLUSH && !req.early_status && qs.ring->in_flight() > 0) {
        // A synchronous flush covers the writes this queue started before it.
        used_any |= SKIFF_TRY(finish(qs, queue, stats, qs.ring->wait_all(qs.done)));
      }
    }
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
  if (qs.ring) {
    SKIFF_TRY_VOID(qs.ring->submit());
    // What finished while we worked (or inside the submit) is answered now:
    // the eventfd was written for it, and draining it here spares a whole
    // wake-up (epoll, eventfd read) that would find nothing left to do.
    if (qs.ring->in_flight() > 0)
      used_any |= SKIFF_TRY(finish(qs, queue, stats, qs.ring->reap(qs.done)));
  }
  if (used_any) signal_used(index);
  return {};
}

void VirtioBlock::on_reset() {
  // Nothing the kernel still does for the old driver may land afterwards:
  // cancel, wait, forget (no status, no used entry).
  for (auto& qs : queues_) {
    if (!qs->ring) continue;
    qs->ring->cancel_and_wait();
    qs->drop_pins();
  }
}

void VirtioBlock::on_queue_reset(uint16_t index, Queue& /*queue*/) {
  // §2.6.1.1.2: the driver takes its in-flight buffers back (Linux's
  // virtqueue_detach_unused_buf), so they are cancelled like on a device
  // reset rather than waited for: a stuck backend cannot hang the driver's
  // queue_reset write. Only this queue's ring; the others keep running.
  QueueState& qs = *queues_[index];
  if (!qs.ring) return;
  qs.ring->cancel_and_wait();
  qs.drop_pins();
}

void VirtioBlock::on_queue_stop(uint16_t index, Queue& queue) {
  QueueState& qs = *queues_[index];
  if (!qs.ring || qs.ring->in_flight() == 0) return;
  size_t n = qs.ring->wait_all(qs.done);
  if (needs_reset()) {  // the driver gets nothing more from a failed device
    qs.drop_pins();
    return;
  }
  auto used = finish(qs, queue, stats_[index], n);
  if (!used) {
    mark_needs_reset(used.error());
    return;
  }
  if (*used) signal_used(index);
}

}  // namespace skiff::virtio

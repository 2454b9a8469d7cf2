#include "virtio/devices/blk_request.h"

#include <linux/virtio_blk.h>

#include <cstring>

namespace skiff::virtio {

static_assert(sizeof(virtio_blk_outhdr) == kBlkHeaderSize);
static_assert(sizeof(virtio_blk_discard_write_zeroes) == kBlkSegmentSize);

namespace {

// True if [sector, sector + count) lies within the disk; no overflow.
bool in_capacity(uint64_t sector, uint64_t count, uint64_t capacity) {
  return sector <= capacity && count <= capacity - sector;
}

// DISCARD / WRITE_ZEROES: `data_len` bytes of 16-byte segments follow the
// header in the readable stream.
Result<> parse_segments(BufferList readable, uint64_t data_len, const BlkLimits& limits,
                        BlkRequest& req) {
  if (data_len % kBlkSegmentSize != 0)
    return fail("blk request type {}: {} data bytes are not a multiple of the 16-byte segment",
                req.type, data_len);
  bool discard = req.type == VIRTIO_BLK_T_DISCARD;
  uint32_t max_segments = discard ? limits.max_discard_segments : limits.max_write_zeroes_segments;
  uint32_t max_sectors = discard ? limits.max_discard_sectors : limits.max_write_zeroes_sectors;
  uint64_t count = data_len / kBlkSegmentSize;
  if (count == 0 || count > max_segments || count > kBlkMaxSegments) {
    req.early_status = VIRTIO_BLK_S_IOERR;
    return {};
  }
  for (uint64_t i = 0; i < count; ++i) {
    virtio_blk_discard_write_zeroes raw;
    copy_from_buffers(readable, kBlkHeaderSize + i * kBlkSegmentSize,
                      std::span(reinterpret_cast<uint8_t*>(&raw), sizeof raw));
    // §5.2.6.2: unknown flags -> UNSUPP; unmap on a discard -> UNSUPP.
    if ((raw.flags & ~uint32_t{VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP}) != 0 ||
        (discard && (raw.flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))) {
      req.early_status = VIRTIO_BLK_S_UNSUPP;
      return {};
    }
    if (raw.num_sectors > max_sectors ||
        !in_capacity(raw.sector, raw.num_sectors, limits.capacity_sectors)) {
      req.early_status = VIRTIO_BLK_S_IOERR;
      return {};
    }
    req.segments[i] = BlkSegment{raw.sector, raw.num_sectors,
                                 (raw.flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) != 0};
  }
  req.num_segments = static_cast<uint32_t>(count);
  return {};
}

}  // namespace

Result<BlkRequest> parse_blk_request(BufferList readable, BufferList writable,
                                     const BlkLimits& limits) {
  BlkRequest req;
  uint64_t readable_len = total_bytes(readable);
  uint64_t writable_len = total_bytes(writable);
  if (readable_len < kBlkHeaderSize)
    return fail("blk request has {} readable bytes, less than the 16-byte header", readable_len);
  if (writable_len == 0) return fail("blk request has no writable byte for the status");

  virtio_blk_outhdr hdr;
  copy_from_buffers(readable, 0, std::span(reinterpret_cast<uint8_t*>(&hdr), sizeof hdr));
  req.type = hdr.type;
  req.sector = hdr.sector;
  req.status = byte_at(writable, writable_len - 1);
  uint64_t extra_readable = readable_len - kBlkHeaderSize;
  uint64_t extra_writable = writable_len - 1;

  switch (req.type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_GET_ID:
      if (extra_readable != 0)
        return fail("blk request type {} carries {} readable data bytes", req.type, extra_readable);
      req.data_len = extra_writable;
      if (req.type == VIRTIO_BLK_T_GET_ID) {
        if (req.data_len < kBlkIdBytes) req.early_status = VIRTIO_BLK_S_IOERR;
        return req;
      }
      break;
    case VIRTIO_BLK_T_OUT:
    case VIRTIO_BLK_T_FLUSH:
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
      if (extra_writable != 0)
        return fail("blk request type {} carries {} writable data bytes", req.type, extra_writable);
      req.data_len = extra_readable;
      if (req.type == VIRTIO_BLK_T_FLUSH) return req;  // data, if any, is ignored
      if (limits.read_only) {
        req.early_status = VIRTIO_BLK_S_IOERR;
        // Still reject an unframed request below; only the outcome is fixed.
      }
      if (req.type != VIRTIO_BLK_T_OUT) {
        auto early = req.early_status;
        SKIFF_TRY_VOID(parse_segments(readable, req.data_len, limits, req));
        if (early) req.early_status = early;  // read-only wins over segment checks
        return req;
      }
      break;
    default:
      // Unknown or unsupported: answer without looking further (§5.2.6).
      req.data_len = 0;
      req.early_status = VIRTIO_BLK_S_UNSUPP;
      return req;
  }

  // IN / OUT.
  if (req.data_len % kSectorSize != 0)
    return fail("blk request type {}: {} data bytes are not a multiple of 512", req.type,
                req.data_len);
  if (!req.early_status &&
      !in_capacity(req.sector, req.data_len / kSectorSize, limits.capacity_sectors))
    req.early_status = VIRTIO_BLK_S_IOERR;
  return req;
}

}  // namespace skiff::virtio

// virtio-blk request parsing (virtio 1.2 §5.2.6), split from the device so
// it can be fuzzed on its own. Input: a chain's readable and writable
// buffers (already inside guest memory, see queue.h) and the device's
// limits. Output: a BlkRequest the executor can run, or an Error.
//
// Which malformations are whose fault (§5.2.6):
//   Error -> the device goes to NEEDS_RESET. The request cannot even be
//   framed or answered, or the driver broke a framing MUST:
//     - fewer than 16 readable bytes for the header (type/reserved/sector);
//     - no writable byte for the status (the last writable byte, §5.2.6);
//     - data on the wrong side: an IN/GET_ID request with readable bytes
//       after the header, or an OUT/DISCARD/WRITE_ZEROES/FLUSH request with
//       writable bytes besides the status;
//     - IN/OUT data not a multiple of 512 bytes, DISCARD/WRITE_ZEROES data
//       not a multiple of 16 (§5.2.6.1 driver MUSTs that leave the device
//       no sensible partial action).
//   A status in the request (early_status) -> reported to the driver, the
//   device keeps running. Well-framed requests the device refuses:
//     - unknown or unsupported type (GET_LIFETIME, SECURE_ERASE, zoned,
//       legacy SCSI/BARRIER) -> VIRTIO_BLK_S_UNSUPP;
//     - a write/discard/write-zeroes on a read-only disk -> IOERR (§5.2.6.2);
//     - sectors beyond capacity, or sector arithmetic that overflows -> IOERR
//       ("device or driver error", §5.2.6);
//     - more segments than max_*_seg, a segment longer than max_*_sectors
//       -> IOERR; unknown segment flag bits, or unmap on DISCARD -> UNSUPP
//       (§5.2.6.2 says UNSUPP for those two);
//     - GET_ID with fewer than 20 data bytes -> IOERR (§5.2.6.1 says 20).
//   FLUSH with a non-zero sector is accepted (the field is unused).
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "base/result.h"
#include "virtio/buffers.h"

namespace skiff::virtio {

inline constexpr uint64_t kSectorSize = 512;
inline constexpr uint64_t kBlkHeaderSize = 16;   // struct virtio_blk_outhdr
inline constexpr uint64_t kBlkSegmentSize = 16;  // struct virtio_blk_discard_write_zeroes
inline constexpr uint32_t kBlkMaxSegments = 16;  // max_discard_seg / max_write_zeroes_seg
inline constexpr uint64_t kBlkIdBytes = 20;      // VIRTIO_BLK_ID_BYTES

struct BlkLimits {
  uint64_t capacity_sectors = 0;
  bool read_only = false;
  uint32_t max_discard_sectors = 0;
  uint32_t max_discard_segments = kBlkMaxSegments;
  uint32_t max_write_zeroes_sectors = 0;
  uint32_t max_write_zeroes_segments = kBlkMaxSegments;
};

struct BlkSegment {
  uint64_t sector = 0;
  uint32_t num_sectors = 0;
  bool unmap = false;
};

struct BlkRequest {
  uint32_t type = 0;
  uint64_t sector = 0;
  // Data bytes: for IN/GET_ID the writable stream [0, data_len), for OUT
  // the readable stream [16, 16 + data_len).
  uint64_t data_len = 0;
  // The status byte in guest memory (last writable byte).
  uint8_t* status = nullptr;
  // Set when parsing already decided the outcome; nothing is executed.
  std::optional<uint8_t> early_status;
  // DISCARD / WRITE_ZEROES ranges, validated against the limits.
  std::array<BlkSegment, kBlkMaxSegments> segments{};
  uint32_t num_segments = 0;
};

// Parses and validates one request; see the header comment for which
// problems are errors and which are statuses.
[[nodiscard]] Result<BlkRequest> parse_blk_request(BufferList readable, BufferList writable,
                                                   const BlkLimits& limits);

}  // namespace skiff::virtio

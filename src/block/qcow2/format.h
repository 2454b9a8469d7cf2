// qcow2 on-disk format: constants, entry bit layouts and big-endian helpers.
// Everything here follows ../shared/specs/qcow2.txt ("Header", "Cluster
// mapping", "Host cluster management"); section names are cited next to each
// group. All multi-byte fields are big-endian on disk.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>

namespace skiff::qcow2 {

// --- big-endian helpers --------------------------------------------------
[[nodiscard]] inline uint16_t load_be16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
[[nodiscard]] inline uint32_t load_be32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return std::byteswap(v);
}
[[nodiscard]] inline uint64_t load_be64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return std::byteswap(v);
}
inline void store_be16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void store_be32(uint8_t* p, uint32_t v) {
  v = std::byteswap(v);
  std::memcpy(p, &v, 4);
}
inline void store_be64(uint8_t* p, uint64_t v) {
  v = std::byteswap(v);
  std::memcpy(p, &v, 8);
}

// --- header ("Header") ---------------------------------------------------
inline constexpr uint32_t kMagic = 0x514649fb;  // "QFI\xfb"
inline constexpr uint32_t kHeaderV2Length = 72;
inline constexpr uint32_t kHeaderV3MinLength = 104;
inline constexpr uint32_t kHeaderV3WithCompressionLength = 112;  // 105 rounded up to 8
inline constexpr uint32_t kMinClusterBits = 9;
inline constexpr uint32_t kMaxClusterBits = 21;  // QEMU's implementation limit (2 MiB)
inline constexpr uint32_t kMaxBackingFileNameSize = 1023;
inline constexpr uint32_t kMaxRefcountOrder = 6;
// QEMU refuses L1 tables above 32 MiB and refcount tables above 8 MiB; we do
// the same so every image we accept, QEMU accepts (spec: "size" note).
inline constexpr uint64_t kMaxL1Bytes = 32ull << 20;
inline constexpr uint64_t kMaxRefcountTableBytes = 8ull << 20;

// Byte offsets of header fields we rewrite in place.
inline constexpr uint64_t kOffL1Size = 36;
inline constexpr uint64_t kOffL1TableOffset = 40;
inline constexpr uint64_t kOffRefcountTableOffset = 48;
inline constexpr uint64_t kOffNbSnapshots = 60;
inline constexpr uint64_t kOffIncompatibleFeatures = 72;

// incompatible_features bits.
inline constexpr uint64_t kIncompatDirty = 1ull << 0;
inline constexpr uint64_t kIncompatCorrupt = 1ull << 1;
inline constexpr uint64_t kIncompatExternalData = 1ull << 2;
inline constexpr uint64_t kIncompatCompressionType = 1ull << 3;
inline constexpr uint64_t kIncompatExtendedL2 = 1ull << 4;
// Bits this implementation understands and honours.
inline constexpr uint64_t kIncompatSupported =
    kIncompatDirty | kIncompatCorrupt | kIncompatCompressionType;
// compatible_features bits.
inline constexpr uint64_t kCompatLazyRefcounts = 1ull << 0;
// autoclear_features bits.
inline constexpr uint64_t kAutoclearBitmaps = 1ull << 0;
inline constexpr uint64_t kAutoclearRawExternal = 1ull << 1;

// compression_type values (header byte 104).
inline constexpr uint8_t kCompressionZlib = 0;
inline constexpr uint8_t kCompressionZstd = 1;

// crypt_method values.
inline constexpr uint32_t kCryptNone = 0;

// --- header extensions ("Header extensions") -----------------------------
inline constexpr uint32_t kExtEnd = 0x00000000;
inline constexpr uint32_t kExtBackingFormat = 0xe2792aca;
inline constexpr uint32_t kExtFeatureTable = 0x6803f857;
inline constexpr uint32_t kExtBitmaps = 0x23852875;
inline constexpr uint32_t kExtCrypto = 0x0537be77;
inline constexpr uint32_t kExtDataFile = 0x44415441;
inline constexpr uint32_t kFeatureNameEntrySize = 48;

// --- L1 / L2 entries ("Cluster mapping") ---------------------------------
inline constexpr uint64_t kOflagCopied = 1ull << 63;              // refcount is exactly one
inline constexpr uint64_t kOflagCompressed = 1ull << 62;          // L2: compressed descriptor
inline constexpr uint64_t kOflagZero = 1ull << 0;                 // L2 v3: reads as zeroes
inline constexpr uint64_t kL1OffsetMask = 0x00fffffffffffe00ull;  // bits 9-55
inline constexpr uint64_t kL2OffsetMask = 0x00fffffffffffe00ull;  // bits 9-55
// Bits that must be zero: L1 bits 1-8 and 56-62; L2 standard bits 1-8, 56-61.
inline constexpr uint64_t kL1ReservedMask = 0x7f000000000001feull;
inline constexpr uint64_t kL2StandardReservedMask = 0x3f000000000001feull;
// Refcount table entries: bits 9-63 are the block offset, 0-8 reserved.
inline constexpr uint64_t kRefTableOffsetMask = 0xfffffffffffffe00ull;
inline constexpr uint64_t kRefTableReservedMask = 0x1ffull;

// Compressed cluster descriptor layout ("Compressed Clusters Descriptor"):
// x = 62 - (cluster_bits - 8); bits 0..x-1 host offset, bits x..61 number of
// additional 512-byte sectors.
struct CompressedDescriptor {
  uint64_t host_offset = 0;  // byte offset, not aligned
  uint64_t max_bytes = 0;    // bytes from host_offset to the end of the last sector
};
[[nodiscard]] inline uint32_t compressed_offset_bits(uint32_t cluster_bits) {
  return 62 - (cluster_bits - 8);
}
[[nodiscard]] inline CompressedDescriptor decode_compressed(uint64_t entry, uint32_t cluster_bits) {
  const uint32_t x = compressed_offset_bits(cluster_bits);
  const uint64_t offset = entry & ((1ull << x) - 1);
  const uint64_t extra = (entry >> x) & ((1ull << (cluster_bits - 8)) - 1);
  return {offset, (extra + 1) * 512 - (offset & 511)};
}
// Inverse of decode_compressed for data of `bytes` bytes at `host_offset`.
[[nodiscard]] inline uint64_t encode_compressed(uint64_t host_offset, uint64_t bytes,
                                                uint32_t cluster_bits) {
  const uint32_t x = compressed_offset_bits(cluster_bits);
  const uint64_t extra = ((host_offset + bytes - 1) >> 9) - (host_offset >> 9);
  return kOflagCompressed | (extra << x) | host_offset;
}

// What one L2 entry describes.
enum class ClusterType {
  kUnallocated,    // read from backing / zeroes
  kZeroPlain,      // zero flag, no host cluster
  kZeroAllocated,  // zero flag, host cluster preallocated
  kNormal,         // data at host offset
  kCompressed,     // compressed descriptor
};
[[nodiscard]] inline ClusterType classify_l2(uint64_t entry) {
  if (entry & kOflagCompressed) return ClusterType::kCompressed;
  const uint64_t off = entry & kL2OffsetMask;
  if (entry & kOflagZero) return off ? ClusterType::kZeroAllocated : ClusterType::kZeroPlain;
  return off ? ClusterType::kNormal : ClusterType::kUnallocated;
}

// --- refcount entries ("Host cluster management") -------------------------
// Reads entry `index` of a refcount block of width 1 << order bits. Sub-byte
// widths pack entries starting at the least significant bit (as QEMU does).
[[nodiscard]] inline uint64_t refcount_get(std::span<const uint8_t> block, uint32_t order,
                                           uint64_t index) {
  switch (order) {
    case 0:
      return (block[index / 8] >> (index % 8)) & 1u;
    case 1:
      return (block[index / 4] >> (2 * (index % 4))) & 3u;
    case 2:
      return (block[index / 2] >> (4 * (index % 2))) & 15u;
    case 3:
      return block[index];
    case 4:
      return load_be16(&block[index * 2]);
    case 5:
      return load_be32(&block[index * 4]);
    default:
      return load_be64(&block[index * 8]);
  }
}
// Caller has checked value <= refcount_max(order).
inline void refcount_set(std::span<uint8_t> block, uint32_t order, uint64_t index, uint64_t value) {
  auto set_bits = [&](uint64_t per_byte, unsigned width) {
    const unsigned shift = static_cast<unsigned>(width * (index % per_byte));
    const unsigned mask = ((1u << width) - 1) << shift;
    uint8_t& b = block[index / per_byte];
    b = static_cast<uint8_t>((b & ~mask) | ((static_cast<unsigned>(value) << shift) & mask));
  };
  switch (order) {
    case 0:
      set_bits(8, 1);
      break;
    case 1:
      set_bits(4, 2);
      break;
    case 2:
      set_bits(2, 4);
      break;
    case 3:
      block[index] = static_cast<uint8_t>(value);
      break;
    case 4:
      store_be16(&block[index * 2], static_cast<uint16_t>(value));
      break;
    case 5:
      store_be32(&block[index * 4], static_cast<uint32_t>(value));
      break;
    default:
      store_be64(&block[index * 8], value);
      break;
  }
}
[[nodiscard]] inline uint64_t refcount_max(uint32_t order) {
  return order >= 6 ? ~0ull : (1ull << (1u << order)) - 1;
}

// --- snapshot table ("Snapshots") ----------------------------------------
// Fixed part of a snapshot table entry; followed by extra data, id, name,
// padding to 8 bytes.
inline constexpr uint32_t kSnapshotFixedSize = 40;
inline constexpr uint64_t kMaxSnapshots = 65536;  // QEMU's QCOW_MAX_SNAPSHOTS

}  // namespace skiff::qcow2

// The parsed qcow2 header and its extensions (spec: "Header", "Header
// extensions", "Feature name table"). parse_header() validates every field
// that later code uses as an offset, size or count, and names the field in
// its error; serialize_header() writes the header back with unknown
// extensions preserved.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace skiff::qcow2 {

struct HeaderExtension {
  uint32_t type = 0;
  std::vector<uint8_t> data;
};

struct FeatureName {
  uint8_t type = 0;  // 0 incompatible, 1 compatible, 2 autoclear
  uint8_t bit = 0;
  std::string name;
};

struct Qcow2Header {
  uint32_t version = 3;
  uint64_t backing_file_offset = 0;
  uint32_t backing_file_size = 0;
  uint32_t cluster_bits = 16;
  uint64_t size = 0;  // virtual disk size in bytes
  uint32_t crypt_method = 0;
  uint32_t l1_size = 0;
  uint64_t l1_table_offset = 0;
  uint64_t refcount_table_offset = 0;
  uint32_t refcount_table_clusters = 0;
  uint32_t nb_snapshots = 0;
  uint64_t snapshots_offset = 0;
  // v3 fields (v2: all zero, refcount_order 4, header_length 72).
  uint64_t incompatible_features = 0;
  uint64_t compatible_features = 0;
  uint64_t autoclear_features = 0;
  uint32_t refcount_order = 4;
  uint32_t header_length = 104;
  uint8_t compression_type = 0;  // kCompressionZlib / kCompressionZstd
  // Raw bytes of header fields beyond those we know (preserved on rewrite).
  std::vector<uint8_t> unknown_header_tail;

  // Extensions.
  std::string backing_file;                       // as stored (may be relative)
  std::optional<std::string> backing_format;      // extension 0xe2792aca
  std::vector<FeatureName> feature_names;         // extension 0x6803f857
  std::vector<HeaderExtension> other_extensions;  // preserved verbatim, in order

  [[nodiscard]] uint64_t cluster_size() const { return 1ull << cluster_bits; }
  [[nodiscard]] uint64_t l2_entries() const { return cluster_size() / 8; }
  [[nodiscard]] uint32_t refcount_bits() const { return 1u << refcount_order; }
  // Refcount entries per refcount block.
  [[nodiscard]] uint64_t refcount_block_entries() const {
    return cluster_size() * 8 / refcount_bits();
  }
  [[nodiscard]] bool has_backing() const { return backing_file_offset != 0; }
  // Name of an (incompatible, compatible, autoclear) feature bit from the
  // image's feature name table, or "" if it has none.
  [[nodiscard]] std::string feature_name(uint8_t type, uint8_t bit) const;
};

// Parses and validates the header. `first_cluster` holds the file's first
// bytes (at least the header; up to one cluster, fewer if the file is
// shorter), `file_size` is the image file's size, used to check that tables
// lie inside the file. Errors name the offending field.
[[nodiscard]] Result<Qcow2Header> parse_header(std::span<const uint8_t> first_cluster,
                                               uint64_t file_size);

// Encodes header + extensions + backing file name into one cluster's worth of
// bytes (the header cluster). backing_file_offset/size and header_length are
// recomputed. Fails if it does not fit in the first cluster.
[[nodiscard]] Result<std::vector<uint8_t>> serialize_header(const Qcow2Header& h);

// Number of L1 entries needed to map `size` bytes with this cluster size.
[[nodiscard]] uint64_t l1_entries_for(uint64_t size, uint32_t cluster_bits);

}  // namespace skiff::qcow2

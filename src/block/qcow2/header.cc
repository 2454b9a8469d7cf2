// Header parsing and validation (spec: "Header", "Header extensions").
// Every value that later code uses as an offset, size or count is checked
// here against the spec's limits, QEMU's implementation limits (so we accept
// nothing QEMU refuses) and the file size; errors name the field.
#include "block/qcow2/header.h"

#include <algorithm>

#include "block/qcow2/format.h"

namespace skiff::qcow2 {

std::string Qcow2Header::feature_name(uint8_t type, uint8_t bit) const {
  for (const FeatureName& f : feature_names)
    if (f.type == type && f.bit == bit) return f.name;
  return "";
}

uint64_t l1_entries_for(uint64_t size, uint32_t cluster_bits) {
  const uint32_t shift = cluster_bits + (cluster_bits - 3);  // bytes mapped per L1 entry
  if (shift >= 64) return size ? 1 : 0;
  return (size >> shift) + ((size & ((1ull << shift) - 1)) ? 1 : 0);
}

namespace {

// [offset, offset + len) lies inside the file and does not wrap.
bool inside_file(uint64_t offset, uint64_t len, uint64_t file_size) {
  return offset <= file_size && len <= file_size - offset;
}

bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
  return alen && blen && a < b + blen && b < a + alen;
}

Result<> parse_extensions(Qcow2Header& h, std::span<const uint8_t> buf, uint64_t start) {
  uint64_t pos = start;
  for (;;) {
    if (pos + 8 > buf.size())
      return fail("qcow2 header extensions run past the first cluster (at byte {})", pos);
    const uint32_t type = load_be32(&buf[pos]);
    const uint32_t len = load_be32(&buf[pos + 4]);
    pos += 8;
    if (type == kExtEnd) return {};
    if (len > buf.size() - pos)
      return fail("qcow2 header extension {:#x} has length {} past the first cluster", type, len);
    std::span<const uint8_t> data = buf.subspan(pos, len);
    switch (type) {
      case kExtBackingFormat:
        h.backing_format = std::string(data.begin(), data.end());
        break;
      case kExtFeatureTable:
        for (size_t i = 0; i + kFeatureNameEntrySize <= data.size(); i += kFeatureNameEntrySize) {
          FeatureName f;
          f.type = data[i];
          f.bit = data[i + 1];
          const auto* name = reinterpret_cast<const char*>(&data[i + 2]);
          f.name.assign(name, strnlen(name, kFeatureNameEntrySize - 2));
          h.feature_names.push_back(std::move(f));
        }
        break;
      default:
        h.other_extensions.push_back({type, std::vector<uint8_t>(data.begin(), data.end())});
        break;
    }
    pos += (static_cast<uint64_t>(len) + 7) & ~7ull;
  }
}

}  // namespace

Result<Qcow2Header> parse_header(std::span<const uint8_t> buf, uint64_t file_size) {
  Qcow2Header h;
  if (buf.size() < kHeaderV2Length)
    return fail("file is too small for a qcow2 header ({} bytes, need {})", buf.size(),
                kHeaderV2Length);
  const uint8_t* p = buf.data();
  if (load_be32(p) != kMagic) return fail("bad qcow2 magic {:#010x}", load_be32(p));
  h.version = load_be32(p + 4);
  if (h.version != 2 && h.version != 3)
    return fail("unsupported qcow2 version {} (field 'version': 2 or 3)", h.version);
  h.backing_file_offset = load_be64(p + 8);
  h.backing_file_size = load_be32(p + 16);
  h.cluster_bits = load_be32(p + 20);
  h.size = load_be64(p + 24);
  h.crypt_method = load_be32(p + 32);
  h.l1_size = load_be32(p + 36);
  h.l1_table_offset = load_be64(p + 40);
  h.refcount_table_offset = load_be64(p + 48);
  h.refcount_table_clusters = load_be32(p + 56);
  h.nb_snapshots = load_be32(p + 60);
  h.snapshots_offset = load_be64(p + 64);

  if (h.cluster_bits < kMinClusterBits || h.cluster_bits > kMaxClusterBits)
    return fail("invalid cluster_bits {} (must be {}..{})", h.cluster_bits, kMinClusterBits,
                kMaxClusterBits);
  const uint64_t cs = h.cluster_size();

  if (h.version == 2) {
    h.header_length = kHeaderV2Length;
    h.refcount_order = 4;
  } else {
    if (buf.size() < kHeaderV3MinLength)
      return fail("file is too small for a qcow2 v3 header ({} bytes)", buf.size());
    h.incompatible_features = load_be64(p + 72);
    h.compatible_features = load_be64(p + 80);
    h.autoclear_features = load_be64(p + 88);
    h.refcount_order = load_be32(p + 96);
    h.header_length = load_be32(p + 100);
    if (h.header_length < kHeaderV3MinLength || h.header_length % 8 != 0 || h.header_length > cs ||
        h.header_length > buf.size())
      return fail("invalid header_length {} (v3: >= 104, multiple of 8, within the first cluster)",
                  h.header_length);
    if (h.refcount_order > kMaxRefcountOrder)
      return fail("invalid refcount_order {} (must be 0..6)", h.refcount_order);
    if (h.header_length > 104) h.compression_type = p[104];
    if (h.header_length > kHeaderV3WithCompressionLength)
      h.unknown_header_tail.assign(p + kHeaderV3WithCompressionLength, p + h.header_length);
    const bool bit = h.incompatible_features & kIncompatCompressionType;
    if (bit && h.compression_type == kCompressionZlib)
      return fail("incompatible feature 'compression type' is set but compression_type is 0");
    if (!bit && h.compression_type != kCompressionZlib)
      return fail("compression_type {} without the 'compression type' incompatible bit",
                  h.compression_type);
    if (h.compression_type > kCompressionZstd)
      return fail("unknown compression_type {} (0 zlib, 1 zstd)", h.compression_type);
  }

  // size and L1 (QEMU limits: L1 at most 32 MiB).
  if (h.size > (1ull << 62)) return fail("invalid virtual size {} (field 'size')", h.size);
  const uint64_t need_l1 = l1_entries_for(h.size, h.cluster_bits);
  if (static_cast<uint64_t>(h.l1_size) * 8 > kMaxL1Bytes)
    return fail("l1_size {} is too large (L1 table above {} bytes)", h.l1_size, kMaxL1Bytes);
  if (need_l1 * 8 > kMaxL1Bytes)
    return fail("virtual size {} needs an L1 table above {} bytes (field 'size')", h.size,
                kMaxL1Bytes);
  if (h.l1_size < need_l1)
    return fail("l1_size {} is too small for virtual size {} (needs {})", h.l1_size, h.size,
                need_l1);
  const uint64_t l1_bytes = static_cast<uint64_t>(h.l1_size) * 8;
  if (h.l1_table_offset % cs != 0)
    return fail("l1_table_offset {:#x} is not aligned to the cluster size", h.l1_table_offset);
  if (h.l1_size > 0) {
    if (h.l1_table_offset < cs)
      return fail("l1_table_offset {:#x} overlaps the header", h.l1_table_offset);
    if (!inside_file(h.l1_table_offset, l1_bytes, file_size))
      return fail("l1_table_offset {:#x} + {} bytes is past the end of the file ({} bytes)",
                  h.l1_table_offset, l1_bytes, file_size);
  }

  // Refcount table (QEMU limit: 8 MiB).
  if (h.refcount_table_offset % cs != 0)
    return fail("refcount_table_offset {:#x} is not aligned to the cluster size",
                h.refcount_table_offset);
  if (h.refcount_table_offset < cs)
    return fail("refcount_table_offset {:#x} overlaps the header", h.refcount_table_offset);
  if (h.refcount_table_clusters == 0)
    return fail("refcount_table_clusters is 0 (an image needs a refcount table)");
  const uint64_t rt_bytes = static_cast<uint64_t>(h.refcount_table_clusters) * cs;
  if (rt_bytes > kMaxRefcountTableBytes)
    return fail("refcount_table_clusters {} is too large (table above {} bytes)",
                h.refcount_table_clusters, kMaxRefcountTableBytes);
  if (!inside_file(h.refcount_table_offset, rt_bytes, file_size))
    return fail("refcount_table_offset {:#x} + {} bytes is past the end of the file ({} bytes)",
                h.refcount_table_offset, rt_bytes, file_size);
  if (overlaps(h.refcount_table_offset, rt_bytes, h.l1_table_offset, l1_bytes))
    return fail("refcount table at {:#x} overlaps the L1 table at {:#x}", h.refcount_table_offset,
                h.l1_table_offset);

  // Snapshot table.
  if (h.nb_snapshots > kMaxSnapshots)
    return fail("nb_snapshots {} is too large (at most {})", h.nb_snapshots, kMaxSnapshots);
  if (h.snapshots_offset % cs != 0)
    return fail("snapshots_offset {:#x} is not aligned to the cluster size", h.snapshots_offset);
  if (h.nb_snapshots > 0 &&
      (h.snapshots_offset < cs ||
       !inside_file(h.snapshots_offset, static_cast<uint64_t>(h.nb_snapshots) * kSnapshotFixedSize,
                    file_size)))
    return fail("snapshots_offset {:#x} with {} snapshots is outside the file", h.snapshots_offset,
                h.nb_snapshots);

  // Backing file name: inside the first cluster.
  if (h.backing_file_offset != 0) {
    if (h.backing_file_size > kMaxBackingFileNameSize || h.backing_file_size == 0)
      return fail("invalid backing_file_size {} (1..{})", h.backing_file_size,
                  kMaxBackingFileNameSize);
    if (h.backing_file_offset > buf.size() ||
        h.backing_file_size > buf.size() - h.backing_file_offset)
      return fail("backing_file_offset {:#x} + {} is outside the first cluster",
                  h.backing_file_offset, h.backing_file_size);
    h.backing_file.assign(reinterpret_cast<const char*>(p + h.backing_file_offset),
                          h.backing_file_size);
  }

  // Header extensions follow the header up to the end of the first cluster.
  SKIFF_TRY_VOID(
      parse_extensions(h, buf.first(std::min<uint64_t>(buf.size(), cs)), h.header_length));
  return h;
}

namespace {

void put_extension(std::vector<uint8_t>& out, uint32_t type, std::span<const uint8_t> data) {
  size_t pos = out.size();
  out.resize(pos + 8 + ((data.size() + 7) & ~size_t{7}), 0);
  store_be32(&out[pos], type);
  store_be32(&out[pos + 4], static_cast<uint32_t>(data.size()));
  std::copy(data.begin(), data.end(), out.begin() + static_cast<ptrdiff_t>(pos + 8));
}

}  // namespace

Result<std::vector<uint8_t>> serialize_header(const Qcow2Header& h) {
  const uint64_t cs = h.cluster_size();
  std::vector<uint8_t> out;
  const uint32_t header_length =
      h.version == 2 ? kHeaderV2Length
                     : static_cast<uint32_t>(kHeaderV3WithCompressionLength +
                                             ((h.unknown_header_tail.size() + 7) & ~size_t{7}));
  out.resize(header_length, 0);
  uint8_t* p = out.data();
  store_be32(p, kMagic);
  store_be32(p + 4, h.version);
  store_be32(p + 20, h.cluster_bits);
  store_be64(p + 24, h.size);
  store_be32(p + 32, h.crypt_method);
  store_be32(p + 36, h.l1_size);
  store_be64(p + 40, h.l1_table_offset);
  store_be64(p + 48, h.refcount_table_offset);
  store_be32(p + 56, h.refcount_table_clusters);
  store_be32(p + 60, h.nb_snapshots);
  store_be64(p + 64, h.snapshots_offset);
  if (h.version >= 3) {
    store_be64(p + 72, h.incompatible_features);
    store_be64(p + 80, h.compatible_features);
    store_be64(p + 88, h.autoclear_features);
    store_be32(p + 96, h.refcount_order);
    store_be32(p + 100, header_length);
    p[104] = h.compression_type;
    std::copy(h.unknown_header_tail.begin(), h.unknown_header_tail.end(),
              out.begin() + kHeaderV3WithCompressionLength);
  }
  if (h.backing_format) {
    const auto& f = *h.backing_format;
    put_extension(out, kExtBackingFormat,
                  std::span(reinterpret_cast<const uint8_t*>(f.data()), f.size()));
  }
  if (!h.feature_names.empty()) {
    std::vector<uint8_t> table(h.feature_names.size() * kFeatureNameEntrySize, 0);
    for (size_t i = 0; i < h.feature_names.size(); ++i) {
      const FeatureName& f = h.feature_names[i];
      uint8_t* e = &table[i * kFeatureNameEntrySize];
      e[0] = f.type;
      e[1] = f.bit;
      std::copy_n(f.name.begin(), std::min<size_t>(f.name.size(), kFeatureNameEntrySize - 2),
                  e + 2);
    }
    put_extension(out, kExtFeatureTable, table);
  }
  for (const HeaderExtension& e : h.other_extensions) put_extension(out, e.type, e.data);
  out.resize(out.size() + 8, 0);  // end of extensions
  if (!h.backing_file.empty()) {
    if (h.backing_file.size() > kMaxBackingFileNameSize)
      return fail("backing file name is longer than {} bytes", kMaxBackingFileNameSize);
    const uint64_t off = out.size();
    out.insert(out.end(), h.backing_file.begin(), h.backing_file.end());
    store_be64(out.data() + 8, off);
    store_be32(out.data() + 16, static_cast<uint32_t>(h.backing_file.size()));
  }
  if (out.size() > cs)
    return fail(
        "qcow2 header, extensions and backing file name ({} bytes) do not fit in one "
        "cluster ({} bytes)",
        out.size(), cs);
  return out;
}

}  // namespace skiff::qcow2

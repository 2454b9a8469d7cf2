// qcow2 image creation. Layout as QEMU's qcow2_co_create leaves it: header in
// cluster 0, refcount table from cluster 1, then the refcount block(s) and the
// L1 table, every one of those clusters with refcount 1.
#include "block/qcow2/create.h"

#include <bit>

#include "block/host_file.h"
#include "block/qcow2/header.h"
#include "block/qcow2/qcow2_image.h"

namespace skiff::qcow2 {

Result<Preallocation> parse_preallocation(const std::string& s) {
  if (s == "off") return Preallocation::kOff;
  if (s == "metadata") return Preallocation::kMetadata;
  if (s == "full") return Preallocation::kFull;
  return fail("invalid preallocation mode '{}' (off, metadata or full)", s);
}

namespace {

uint64_t div_up(uint64_t a, uint64_t b) {
  return a / b + (a % b ? 1 : 0);
}

// The feature name table QEMU writes into v3 images.
std::vector<FeatureName> default_feature_names() {
  return {{0, 0, "dirty bit"},        {0, 1, "corrupt bit"},         {0, 2, "external data file"},
          {0, 3, "compression type"}, {0, 4, "extended L2 entries"}, {1, 0, "lazy refcounts"},
          {2, 0, "bitmaps"},          {2, 1, "raw external data"}};
}

}  // namespace

Result<> create(const std::string& path, const CreateOptions& o) {
  const uint64_t cs = o.cluster_size;
  if (!std::has_single_bit(cs) || cs < (1u << kMinClusterBits) || cs > (1u << kMaxClusterBits))
    return fail("invalid cluster_size {} (a power of two from 512 to 2M)", cs);
  if (o.version != 2 && o.version != 3)
    return fail("invalid qcow2 version {} (compat 0.10 = 2, 1.1 = 3)", o.version);
  if (!std::has_single_bit(o.refcount_bits) || o.refcount_bits > 64)
    return fail("invalid refcount_bits {} (a power of two from 1 to 64)", o.refcount_bits);
  if (o.version == 2 && o.refcount_bits != 16)
    return fail("refcount_bits {} needs compat=1.1 (version 3)", o.refcount_bits);
  if (o.compression_type > kCompressionZstd)
    return fail("invalid compression_type {}", o.compression_type);
  if (o.version == 2 && o.compression_type != kCompressionZlib)
    return fail("compression_type zstd needs compat=1.1 (version 3)");
  if (o.version == 2 && o.lazy_refcounts) return fail("lazy_refcounts needs compat=1.1");
  if (o.backing_file.empty() && !o.backing_format.empty())
    return fail("backing_fmt given without backing_file");
  if (!o.backing_file.empty() && o.preallocation != Preallocation::kOff)
    return fail("preallocation is not supported with a backing file");

  Qcow2Header h;
  h.version = o.version;
  h.cluster_bits = static_cast<uint32_t>(std::countr_zero(cs));
  h.size = (o.size + 511) & ~uint64_t{511};
  h.refcount_order = static_cast<uint32_t>(std::countr_zero(o.refcount_bits));
  const uint64_t l1_entries = l1_entries_for(h.size, h.cluster_bits);
  if (l1_entries * 8 > kMaxL1Bytes)
    return fail("size {} is too large for cluster_size {} (L1 table above 32 MiB)", o.size, cs);
  h.l1_size = static_cast<uint32_t>(l1_entries);
  if (o.version == 3) {
    h.compatible_features = o.lazy_refcounts ? kCompatLazyRefcounts : 0;
    h.compression_type = o.compression_type;
    if (o.compression_type != kCompressionZlib) h.incompatible_features |= kIncompatCompressionType;
    h.feature_names = default_feature_names();
  }
  h.backing_file = o.backing_file;
  h.backing_file_offset = o.backing_file.empty() ? 0 : 1;
  if (!o.backing_format.empty()) h.backing_format = o.backing_format;

  // Clusters: header, refcount table (rt), refcount blocks (rb), L1 (l1c);
  // the blocks must cover all of them.
  const uint64_t block_entries = cs * 8 / o.refcount_bits;
  const uint64_t l1c = div_up(l1_entries * 8, cs);
  uint64_t rt = 1, rb = 1;
  for (;;) {
    const uint64_t total = 1 + rt + rb + l1c;
    const uint64_t rb2 = div_up(total, block_entries);
    const uint64_t rt2 = div_up(rb2 * 8, cs);
    if (rb2 == rb && rt2 == rt) break;
    rb = std::max(rb, rb2);
    rt = std::max(rt, rt2);
  }
  const uint64_t total = 1 + rt + rb + l1c;
  h.refcount_table_offset = cs;
  h.refcount_table_clusters = static_cast<uint32_t>(rt);
  h.l1_table_offset = l1c ? (1 + rt + rb) * cs : 0;

  std::vector<uint8_t> hdr = SKIFF_TRY(serialize_header(h));
  hdr.resize(cs, 0);
  std::vector<uint8_t> table(rt * cs, 0);
  for (uint64_t i = 0; i < rb; ++i) store_be64(&table[i * 8], (1 + rt + i) * cs);
  std::vector<uint8_t> blocks(rb * cs, 0);
  for (uint64_t c = 0; c < total; ++c)
    refcount_set(std::span(blocks).subspan((c / block_entries) * cs, cs), h.refcount_order,
                 c % block_entries, 1);

  {
    HostFile f = SKIFF_TRY(HostFile::create(path));
    SKIFF_TRY_VOID(f.pwrite(0, hdr));
    SKIFF_TRY_VOID(f.pwrite(cs, table));
    SKIFF_TRY_VOID(f.pwrite((1 + rt) * cs, blocks));
    SKIFF_TRY_VOID(f.truncate(total * cs));  // the L1 table reads as zeroes
    SKIFF_TRY_VOID(f.sync());
  }
  if (o.preallocation != Preallocation::kOff) {
    OpenImageOptions oo;
    oo.open_backing = false;
    auto img = SKIFF_TRY(Qcow2Image::open(path, oo));
    SKIFF_TRY_VOID(img->preallocate(o.preallocation == Preallocation::kFull));
  }
  return {};
}

}  // namespace skiff::qcow2

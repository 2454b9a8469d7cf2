#include "block/tools/qcow2_metadata.h"

#include <algorithm>
#include <cstring>

namespace skiff::qcow2tools {
namespace {

using qcow2::kMaxL1Bytes;
using qcow2::kMaxRefcountTableBytes;
using qcow2::kMaxSnapshots;
constexpr uint64_t kMaxSnapshotExtra = 1024;

// Big-endian field of 1..8 bytes.
uint64_t load_be(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

void store_be(uint8_t* p, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
}

}  // namespace

Result<Qcow2Metadata> Qcow2Metadata::open(const std::string& path, bool writable) {
  Qcow2Metadata m(SKIFF_TRY(HostFile::open(path, !writable)));
  m.path_ = path;
  m.writable_ = writable;
  SKIFF_TRY_VOID(m.parse_header());
  return m;
}

Result<uint64_t> Qcow2Metadata::file_size() const {
  return file_.size();
}

Result<> Qcow2Metadata::parse_header() {
  // The block library's parser validates every field and extension; the
  // tools add what they cannot handle.
  const uint64_t fsize = SKIFF_TRY(file_size());
  std::vector<uint8_t> first(std::min<uint64_t>(fsize, 1ULL << qcow2::kMaxClusterBits));
  SKIFF_TRY_VOID(pread_exact(0, first));
  auto h = qcow2::parse_header(first, fsize);
  if (!h) return context(h.error(), path_);
  h_ = std::move(*h);
  if (h_.crypt_method != 0) return fail("{}: encrypted images are not supported", path_);
  if (h_.incompatible_features & qcow2::kIncompatExternalData)
    return fail("{}: external data files are not supported by skiff-img's qcow2 tools", path_);
  if (h_.incompatible_features & qcow2::kIncompatExtendedL2)
    return fail("{}: extended L2 entries are not supported by skiff-img's qcow2 tools", path_);
  if (h_.nb_snapshots > kMaxSnapshots)
    return fail("{}: nb_snapshots {} too large", path_, h_.nb_snapshots);
  if (h_.nb_snapshots && h_.snapshots_offset % cluster_size())
    return fail("{}: snapshots_offset {:#x} not cluster aligned", path_, h_.snapshots_offset);
  reftable_ = SKIFF_TRY(read_refcount_table());
  return {};
}

Result<std::vector<uint64_t>> Qcow2Metadata::read_table(uint64_t offset, uint64_t entries,
                                                        std::string_view what) const {
  uint64_t fsize = SKIFF_TRY(file_size());
  if (offset > fsize || entries * 8 > fsize - offset)
    return fail("{}: {} at {:#x} ({} entries) lies past the end of the file", path_, what, offset,
                entries);
  std::vector<uint8_t> raw(entries * 8);
  SKIFF_TRY_VOID(pread_exact(offset, raw));
  std::vector<uint64_t> t(entries);
  for (uint64_t i = 0; i < entries; ++i) t[i] = load_be(&raw[i * 8], 8);
  return t;
}

Result<> Qcow2Metadata::write_table(uint64_t offset, const std::vector<uint64_t>& table) {
  std::vector<uint8_t> raw(table.size() * 8);
  for (size_t i = 0; i < table.size(); ++i) store_be(&raw[i * 8], table[i], 8);
  return pwrite_exact(offset, raw);
}

Result<std::vector<uint64_t>> Qcow2Metadata::read_l1() const {
  return read_table(h_.l1_table_offset, h_.l1_size, "L1 table");
}

Result<std::vector<uint64_t>> Qcow2Metadata::read_refcount_table() const {
  return read_table(h_.refcount_table_offset, h_.refcount_table_clusters * cluster_size() / 8,
                    "refcount table");
}

Result<std::vector<uint8_t>*> Qcow2Metadata::refblock(uint64_t ti, bool create) {
  if (auto it = refblocks_.find(ti); it != refblocks_.end()) return &it->second.bytes;
  if (ti >= reftable_.size()) {
    if (!create) return nullptr;
    SKIFF_TRY_VOID(grow_refcount_table(ti + 1));
    if (auto it = refblocks_.find(ti); it != refblocks_.end()) return &it->second.bytes;
  }
  const uint64_t cs = cluster_size();
  uint64_t off = reftable_[ti] & qcow2::kL2OffsetMask;
  CachedBlock cb;
  cb.bytes.assign(cs, 0);
  if (off) {
    if (off % cs) return fail("{}: refcount block {:#x} not cluster aligned", path_, off);
    SKIFF_TRY_VOID(pread_exact(off, cb.bytes));
    cb.offset = off;
  } else {
    if (!create) return nullptr;
    // A new block describes itself from the first cluster of the range it
    // covers, which is free because no block covered it (as QEMU places them).
    uint64_t first = ti * refblock_entries();
    cb.offset = first * cs;
    cb.dirty = true;
    reftable_[ti] = cb.offset;
    reftable_dirty_.insert(ti);
    auto [it, _] = refblocks_.emplace(ti, std::move(cb));
    SKIFF_TRY_VOID(set_refcount(first, 1));
    return &it->second.bytes;
  }
  auto [it, _] = refblocks_.emplace(ti, std::move(cb));
  return &it->second.bytes;
}

Result<uint64_t> Qcow2Metadata::refcount(uint64_t cluster) {
  uint64_t e = refblock_entries();
  auto* blk = SKIFF_TRY(refblock(cluster / e, false));
  if (!blk) return 0;
  return qcow2::refcount_get(*blk, h_.refcount_order, cluster % e);
}

Result<> Qcow2Metadata::set_refcount(uint64_t cluster, uint64_t value) {
  if (value > refcount_max())
    return fail("{}: refcount of cluster {} would overflow {} bits", path_, cluster,
                refcount_bits());
  uint64_t e = refblock_entries();
  auto* blk = SKIFF_TRY(refblock(cluster / e, value != 0));
  if (!blk) return {};  // refcount already 0
  qcow2::refcount_set(*blk, h_.refcount_order, cluster % e, value);
  refblocks_[cluster / e].dirty = true;
  if (value == 0) alloc_hint_ = std::min(alloc_hint_, cluster);
  return {};
}

Result<> Qcow2Metadata::add_refcount(uint64_t cluster, int64_t delta) {
  uint64_t r = SKIFF_TRY(refcount(cluster));
  if (delta < 0 && r < static_cast<uint64_t>(-delta))
    return fail("{}: refcount of cluster {} would drop below zero", path_, cluster);
  return set_refcount(cluster, r + static_cast<uint64_t>(delta));
}

Result<uint64_t> Qcow2Metadata::allocate(uint64_t n) {
  uint64_t start = std::max<uint64_t>(alloc_hint_, 1);
  uint64_t run = 0;
  for (uint64_t c = start;; ++c) {
    if (c > (1ULL << 56) / cluster_size()) return fail("{}: no free clusters", path_);
    uint64_t r = SKIFF_TRY(refcount(c));
    if (r != 0) {
      run = 0;
      continue;
    }
    // Create the covering block now: it may claim the cluster we are looking at.
    auto* blk = SKIFF_TRY(refblock(c / refblock_entries(), true));
    (void)blk;
    if (SKIFF_TRY(refcount(c)) != 0) {
      run = 0;
      continue;
    }
    if (++run == n) {
      uint64_t first = c + 1 - n;
      for (uint64_t k = first; k <= c; ++k) SKIFF_TRY_VOID(set_refcount(k, 1));
      if (alloc_hint_ >= first) alloc_hint_ = c + 1;
      return first * cluster_size();
    }
  }
}

Result<> Qcow2Metadata::grow_refcount_table(uint64_t min_entries) {
  SKIFF_TRY_VOID(flush());
  const uint64_t cs = cluster_size();
  const uint64_t per_cluster = cs / 8;
  const uint64_t r = reftable_.size();
  uint64_t want = std::max({min_entries, r * 2, r + 1});
  uint64_t table_clusters = (want + per_cluster - 1) / per_cluster;
  if (table_clusters * cs > kMaxRefcountTableBytes)
    return fail("{}: refcount table would exceed {} bytes", path_, kMaxRefcountTableBytes);
  if (table_clusters + 1 > refblock_entries())
    return fail("{}: refcount table growth does not fit one refcount block", path_);
  // New block at the start of the first uncovered range, new table right after it.
  uint64_t block_cluster = r * refblock_entries();
  uint64_t table_off = (block_cluster + 1) * cs;
  std::vector<uint64_t> nt(table_clusters * per_cluster, 0);
  std::copy(reftable_.begin(), reftable_.end(), nt.begin());
  nt[r] = block_cluster * cs;
  std::vector<uint64_t> old = reftable_;
  uint64_t old_off = h_.refcount_table_offset;
  uint32_t old_clusters = h_.refcount_table_clusters;
  reftable_ = nt;
  CachedBlock cb{block_cluster * cs, std::vector<uint8_t>(cs, 0), true};
  refblocks_.emplace(r, std::move(cb));
  for (uint64_t k = 0; k <= table_clusters; ++k) SKIFF_TRY_VOID(set_refcount(block_cluster + k, 1));
  SKIFF_TRY_VOID(flush_refblocks());
  SKIFF_TRY_VOID(write_table(table_off, nt));
  SKIFF_TRY_VOID(file_.sync());
  SKIFF_TRY_VOID(set_refcount_table_fields(table_off, static_cast<uint32_t>(table_clusters)));
  SKIFF_TRY_VOID(file_.sync());
  reftable_dirty_.clear();
  for (uint64_t k = 0; k < old_clusters; ++k) SKIFF_TRY_VOID(add_refcount(old_off / cs + k, -1));
  return {};
}

Result<> Qcow2Metadata::flush_refblocks() {
  for (auto& [ti, cb] : refblocks_) {
    if (!cb.dirty) continue;
    SKIFF_TRY_VOID(pwrite_exact(cb.offset, cb.bytes));
    cb.dirty = false;
  }
  return {};
}

Result<> Qcow2Metadata::flush() {
  if (!writable_) return {};
  // Blocks first, then the table entries that point at them: a crash in
  // between leaves unreferenced blocks (leaks), never dangling pointers.
  SKIFF_TRY_VOID(flush_refblocks());
  if (!reftable_dirty_.empty()) {
    SKIFF_TRY_VOID(file_.sync());
    for (uint64_t ti : reftable_dirty_) {
      uint8_t e[8];
      store_be(e, reftable_[ti], 8);
      SKIFF_TRY_VOID(pwrite_exact(h_.refcount_table_offset + ti * 8, e));
    }
    reftable_dirty_.clear();
  }
  SKIFF_TRY_VOID(file_.sync());
  return {};
}

Result<std::vector<Qcow2Snapshot>> Qcow2Metadata::read_snapshots() const {
  std::vector<Qcow2Snapshot> out;
  uint64_t fsize = SKIFF_TRY(file_size());
  uint64_t off = h_.snapshots_offset;
  for (uint32_t i = 0; i < h_.nb_snapshots; ++i) {
    uint8_t f[40];
    if (off + 40 > fsize) return fail("{}: snapshot table entry {} past end of file", path_, i);
    SKIFF_TRY_VOID(pread_exact(off, f));
    Qcow2Snapshot s;
    s.l1_table_offset = load_be(f, 8);
    s.l1_size = static_cast<uint32_t>(load_be(f + 8, 4));
    uint64_t id_len = load_be(f + 12, 2), name_len = load_be(f + 14, 2);
    s.date_sec = static_cast<uint32_t>(load_be(f + 16, 4));
    s.date_nsec = static_cast<uint32_t>(load_be(f + 20, 4));
    s.vm_clock_nsec = load_be(f + 24, 8);
    s.vm_state_size = load_be(f + 32, 4);
    uint64_t extra = load_be(f + 36, 4);
    if (extra > kMaxSnapshotExtra)
      return fail("{}: snapshot {} extra data size {} too large", path_, i, extra);
    uint64_t total = 40 + extra + id_len + name_len;
    if (off + total > fsize) return fail("{}: snapshot table entry {} past end of file", path_, i);
    std::vector<uint8_t> rest(total - 40);
    SKIFF_TRY_VOID(pread_exact(off + 40, rest));
    if (extra >= 8) s.vm_state_size = load_be(rest.data(), 8);
    if (extra >= 16) s.disk_size = load_be(rest.data() + 8, 8);
    if (extra >= 24) s.icount = load_be(rest.data() + 16, 8);
    if (extra > 24) s.extra_tail.assign(rest.begin() + 24, rest.begin() + static_cast<long>(extra));
    s.id.assign(rest.begin() + static_cast<long>(extra),
                rest.begin() + static_cast<long>(extra + id_len));
    s.name.assign(rest.begin() + static_cast<long>(extra + id_len), rest.end());
    if (s.l1_table_offset % cluster_size())
      return fail("{}: snapshot '{}' L1 table offset {:#x} not cluster aligned", path_, s.name,
                  s.l1_table_offset);
    if (uint64_t(s.l1_size) * 8 > kMaxL1Bytes)
      return fail("{}: snapshot '{}' l1_size {} too large", path_, s.name, s.l1_size);
    out.push_back(std::move(s));
    off += (total + 7) & ~7ULL;
  }
  return out;
}

std::vector<uint8_t> Qcow2Metadata::encode_snapshots(
    const std::vector<Qcow2Snapshot>& snaps) const {
  std::vector<uint8_t> out;
  for (const auto& s : snaps) {
    // v3 requires extra data up to byte 55 (qcow2.txt "Snapshots"); write it for v2 too, as QEMU
    // does. QEMU 7 writes 24 bytes (vm state size, disk size, icount); so do we.
    uint64_t extra = 24 + s.extra_tail.size();
    uint64_t total = 40 + extra + s.id.size() + s.name.size();
    size_t base = out.size();
    out.resize(base + ((total + 7) & ~7ULL), 0);
    uint8_t* p = out.data() + base;
    store_be(p, s.l1_table_offset, 8);
    store_be(p + 8, s.l1_size, 4);
    store_be(p + 12, s.id.size(), 2);
    store_be(p + 14, s.name.size(), 2);
    store_be(p + 16, s.date_sec, 4);
    store_be(p + 20, s.date_nsec, 4);
    store_be(p + 24, s.vm_clock_nsec, 8);
    store_be(p + 32, s.vm_state_size > 0xffffffffULL ? 0 : s.vm_state_size, 4);
    store_be(p + 36, extra, 4);
    store_be(p + 40, s.vm_state_size, 8);
    store_be(p + 48, s.disk_size.value_or(h_.size), 8);
    store_be(p + 56, s.icount.value_or(0), 8);
    std::memcpy(p + 64, s.extra_tail.data(), s.extra_tail.size());
    std::memcpy(p + 40 + extra, s.id.data(), s.id.size());
    std::memcpy(p + 40 + extra + s.id.size(), s.name.data(), s.name.size());
  }
  return out;
}

Result<> Qcow2Metadata::write_header_bytes(uint64_t offset, std::span<const uint8_t> bytes) {
  return pwrite_exact(offset, bytes);
}

Result<> Qcow2Metadata::set_snapshot_fields(uint32_t nb, uint64_t offset) {
  // nb_snapshots (60..63) and snapshots_offset (64..71) are adjacent: one write.
  uint8_t b[12];
  store_be(b, nb, 4);
  store_be(b + 4, offset, 8);
  SKIFF_TRY_VOID(write_header_bytes(60, b));
  h_.nb_snapshots = nb;
  h_.snapshots_offset = offset;
  return {};
}

Result<> Qcow2Metadata::set_l1_fields(uint32_t l1_size, uint64_t offset) {
  uint8_t b[12];
  store_be(b, l1_size, 4);
  store_be(b + 4, offset, 8);
  SKIFF_TRY_VOID(write_header_bytes(36, b));
  h_.l1_size = l1_size;
  h_.l1_table_offset = offset;
  return {};
}

Result<> Qcow2Metadata::set_refcount_table_fields(uint64_t offset, uint32_t clusters) {
  uint8_t b[12];
  store_be(b, offset, 8);
  store_be(b + 8, clusters, 4);
  SKIFF_TRY_VOID(write_header_bytes(48, b));
  h_.refcount_table_offset = offset;
  h_.refcount_table_clusters = clusters;
  return {};
}

Result<> Qcow2Metadata::replace_refcount_structure(uint64_t table_offset, uint32_t clusters) {
  SKIFF_TRY_VOID(set_refcount_table_fields(table_offset, clusters));
  refblocks_.clear();
  reftable_dirty_.clear();
  reftable_ = SKIFF_TRY(read_refcount_table());
  alloc_hint_ = 0;
  return {};
}

Result<> Qcow2Metadata::set_size(uint64_t size) {
  uint8_t b[8];
  store_be(b, size, 8);
  SKIFF_TRY_VOID(write_header_bytes(24, b));
  h_.size = size;
  return {};
}

Result<> Qcow2Metadata::set_incompatible(uint64_t bits) {
  if (h_.version < 3) return {};
  uint8_t b[8];
  store_be(b, bits, 8);
  SKIFF_TRY_VOID(write_header_bytes(72, b));
  h_.incompatible_features = bits;
  return {};
}

}  // namespace skiff::qcow2tools

// Qcow2Image metadata API used by skiff-img (info, map, check, snapshots,
// rebase, resize) and the refcount rebuild (repair, dirty bit).
#include <algorithm>

#include "block/qcow2/format.h"
#include "block/qcow2/qcow2_image.h"
#include "block/qcow2/refcount.h"
#include "block/qcow2/table_cache.h"

namespace skiff {

using namespace qcow2;

namespace {
uint64_t clusters_for(uint64_t bytes, uint32_t bits) {
  return (bytes + (1ull << bits) - 1) >> bits;
}
}  // namespace

Qcow2Header Qcow2Image::header() const {
  std::lock_guard g(mutex_);
  Qcow2Header h = header_;
  h.refcount_table_offset = refcounts_->table_offset();
  h.refcount_table_clusters = refcounts_->table_clusters();
  return h;
}

Result<uint64_t> Qcow2Image::file_size() const {
  std::lock_guard g(mutex_);
  return file_.size();
}

Result<std::vector<uint64_t>> Qcow2Image::l1_table() {
  std::lock_guard g(mutex_);
  return l1_;
}

Result<std::vector<uint64_t>> Qcow2Image::l2_table(uint64_t l2_offset) {
  std::lock_guard g(mutex_);
  if (l2_offset % cluster_size_ != 0 || l2_offset < cluster_size_)
    return fail("L2 table offset {:#x} is not a cluster-aligned data-area offset", l2_offset);
  SKIFF_TRY_VOID(check_host_range(l2_offset, cluster_size_, "L2 table"));
  const uint8_t* t = SKIFF_TRY(l2_cache_->get(l2_offset));
  std::vector<uint64_t> out(cluster_size_ / 8);
  for (size_t i = 0; i < out.size(); ++i) out[i] = load_be64(t + i * 8);
  return out;
}

Result<std::vector<uint64_t>> Qcow2Image::refcount_table() {
  std::lock_guard g(mutex_);
  return refcounts_->table();
}

Result<uint64_t> Qcow2Image::refcount(uint64_t host_offset) {
  std::lock_guard g(mutex_);
  return refcounts_->get(host_offset >> cluster_bits_);
}

Result<std::vector<uint8_t>> Qcow2Image::read_host(uint64_t offset, uint64_t length) {
  std::lock_guard g(mutex_);
  SKIFF_TRY_VOID(check_host_range(offset, length, "read"));
  std::vector<uint8_t> out(static_cast<size_t>(length));
  SKIFF_TRY_VOID(file_.pread(offset, out));
  return out;
}

Result<> Qcow2Image::write_host(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard g(mutex_);
  if (read_only_) return fail("qcow2 image '{}' is open read-only", file_.path());
  if (offset < cluster_size_) return fail("write_host: refusing to write into the header cluster");
  SKIFF_TRY_VOID(file_.pwrite(offset, data));
  file_size_ = std::max(file_size_, offset + data.size());
  return {};
}

Result<> Qcow2Image::drop_caches() {
  std::lock_guard g(mutex_);
  SKIFF_TRY_VOID(flush_tables_locked());
  l2_cache_->clear();
  refcounts_->clear_cache();
  decompressed_entry_ = 0;
  compressed_next_ = 0;
  file_size_ = SKIFF_TRY(file_.size());
  std::vector<uint8_t> raw(l1_.size() * 8);
  SKIFF_TRY_VOID(file_.pread(header_.l1_table_offset, raw));
  for (size_t i = 0; i < l1_.size(); ++i) l1_[i] = load_be64(&raw[i * 8]);
  return refcounts_->load(refcounts_->table_offset(), refcounts_->table_clusters());
}

Result<uint64_t> Qcow2Image::allocate_clusters(uint64_t count) {
  std::lock_guard g(mutex_);
  if (read_only_) return fail("qcow2 image '{}' is open read-only", file_.path());
  return refcounts_->allocate(count);
}

Result<> Qcow2Image::update_refcount(uint64_t host_offset, uint64_t length, int64_t delta) {
  std::lock_guard g(mutex_);
  if (read_only_) return fail("qcow2 image '{}' is open read-only", file_.path());
  if (length == 0) return {};
  if (delta < 0) SKIFF_TRY_VOID(flush_tables_locked());
  const uint64_t first = host_offset >> cluster_bits_;
  const uint64_t last = (host_offset + length - 1) >> cluster_bits_;
  for (uint64_t c = first; c <= last; ++c) SKIFF_TRY_VOID(refcounts_->add(c, delta));
  if (delta < 0) {
    compressed_next_ = 0;
    decompressed_entry_ = 0;
  }
  return {};
}

Result<> Qcow2Image::write_header_locked() {
  Qcow2Header h = header_;
  h.refcount_table_offset = refcounts_->table_offset();
  h.refcount_table_clusters = refcounts_->table_clusters();
  std::vector<uint8_t> raw = SKIFF_TRY(serialize_header(h));
  raw.resize(cluster_size_, 0);
  SKIFF_TRY_VOID(file_.pwrite(0, raw));
  header_ = h;
  return file_.sync();
}

// Installs `entries` as the active L1 table: in place when it fits in the
// current table's clusters, otherwise in new clusters (written and synced
// before the header points at them; the old table is freed afterwards).
Result<> Qcow2Image::set_l1_locked(std::vector<uint64_t> entries) {
  SKIFF_TRY_VOID(flush_tables_locked());
  const uint64_t need = l1_entries_for(header_.size, cluster_bits_);
  if (entries.size() < need) entries.resize(need, 0);
  if (entries.size() * 8 > kMaxL1Bytes)
    return fail("L1 table of {} entries exceeds {} bytes", entries.size(), kMaxL1Bytes);
  const uint64_t old_clusters = clusters_for(l1_.size() * 8, cluster_bits_);
  const uint64_t new_clusters = clusters_for(entries.size() * 8, cluster_bits_);
  if (new_clusters <= old_clusters && header_.l1_table_offset != 0) {
    l1_ = std::move(entries);
    SKIFF_TRY_VOID(write_l1_locked());
    if (l1_.size() != header_.l1_size) {
      uint8_t buf[4];
      store_be32(buf, static_cast<uint32_t>(l1_.size()));
      SKIFF_TRY_VOID(file_.sync());
      SKIFF_TRY_VOID(file_.pwrite(kOffL1Size, buf));
      header_.l1_size = static_cast<uint32_t>(l1_.size());
    }
    return file_.sync();
  }
  const uint64_t at = SKIFF_TRY(refcounts_->allocate(new_clusters));
  SKIFF_TRY_VOID(refcounts_->flush());
  std::vector<uint8_t> raw(new_clusters * cluster_size_, 0);
  for (size_t i = 0; i < entries.size(); ++i) store_be64(&raw[i * 8], entries[i]);
  SKIFF_TRY_VOID(file_.pwrite(at, raw));
  file_size_ = std::max(file_size_, at + raw.size());
  SKIFF_TRY_VOID(file_.sync());
  uint8_t hdr[12];  // l1_size (36..39) and l1_table_offset (40..47) are adjacent
  store_be32(hdr, static_cast<uint32_t>(entries.size()));
  store_be64(hdr + 4, at);
  SKIFF_TRY_VOID(file_.pwrite(kOffL1Size, hdr));
  SKIFF_TRY_VOID(file_.sync());
  const uint64_t old_offset = header_.l1_table_offset;
  header_.l1_size = static_cast<uint32_t>(entries.size());
  header_.l1_table_offset = at;
  l1_ = std::move(entries);
  l1_dirty_ = false;
  if (old_offset != 0 && old_clusters > 0)
    SKIFF_TRY_VOID(free_host_range(old_offset, old_clusters * cluster_size_));
  return process_pending_frees();
}

Result<> Qcow2Image::set_active_l1(std::span<const uint64_t> entries) {
  std::lock_guard g(mutex_);
  if (read_only_) return fail("qcow2 image '{}' is open read-only", file_.path());
  return set_l1_locked(std::vector<uint64_t>(entries.begin(), entries.end()));
}

Result<> Qcow2Image::update_copied_flags_locked() {
  for (uint64_t i = 0; i < l1_.size(); ++i) {
    const uint64_t off = SKIFF_TRY(l2_offset_locked(i));
    if (off == 0) continue;
    const bool l2_owned = SKIFF_TRY(refcount_locked(off >> cluster_bits_)) == 1;
    const uint64_t want_l1 = off | (l2_owned ? kOflagCopied : 0);
    if (l1_[i] != want_l1) {
      l1_[i] = want_l1;
      l1_dirty_ = true;
    }
    for (uint64_t j = 0; j < cluster_size_ / 8; ++j) {
      uint8_t* t = SKIFF_TRY(l2_cache_->get(off));
      const uint64_t e = load_be64(t + j * 8);
      const ClusterType type = classify_l2(e);
      uint64_t want = e & ~kOflagCopied;
      if (type == ClusterType::kNormal || type == ClusterType::kZeroAllocated) {
        if (SKIFF_TRY(refcount_locked((e & kL2OffsetMask) >> cluster_bits_)) == 1)
          want |= kOflagCopied;
      }
      if (want != e) {
        t = SKIFF_TRY(l2_cache_->get(off));
        store_be64(t + j * 8, want);
        l2_cache_->mark_dirty(off);
      }
    }
  }
  return flush_tables_locked();
}

Result<> Qcow2Image::update_copied_flags() {
  std::lock_guard g(mutex_);
  if (read_only_) return fail("qcow2 image '{}' is open read-only", file_.path());
  return update_copied_flags_locked();
}

Result<> Qcow2Image::set_snapshot_table(uint64_t offset, uint32_t count) {
  std::lock_guard g(mutex_);
  if (read_only_) return fail("qcow2 image '{}' is open read-only", file_.path());
  if (count > kMaxSnapshots) return fail("too many snapshots ({})", count);
  if (offset % cluster_size_ != 0)
    return fail("snapshot table offset {:#x} is not cluster aligned", offset);
  SKIFF_TRY_VOID(file_.sync());
  uint8_t buf[12];  // nb_snapshots (60..63) and snapshots_offset (64..71) are adjacent
  store_be32(buf, count);
  store_be64(buf + 4, offset);
  SKIFF_TRY_VOID(file_.pwrite(kOffNbSnapshots, buf));
  header_.nb_snapshots = count;
  header_.snapshots_offset = offset;
  return file_.sync();
}

Result<> Qcow2Image::set_backing_file(const std::string& name, const std::string& format) {
  std::lock_guard g(mutex_);
  if (read_only_) return fail("qcow2 image '{}' is open read-only", file_.path());
  SKIFF_TRY_VOID(flush_tables_locked());
  header_.backing_file = name;
  header_.backing_file_offset = name.empty() ? 0 : 1;  // recomputed by serialize_header
  header_.backing_file_size = static_cast<uint32_t>(name.size());
  if (format.empty())
    header_.backing_format.reset();
  else
    header_.backing_format = format;
  SKIFF_TRY_VOID(write_header_locked());
  backing_.reset();
  if (!name.empty()) {
    OpenImageOptions o;
    o.read_only = true;
    SKIFF_TRY_VOID(open_backing(o));
  }
  return {};
}

Result<> Qcow2Image::resize(uint64_t new_size) {
  std::lock_guard g(mutex_);
  if (read_only_) return fail("qcow2 image '{}' is open read-only", file_.path());
  if (new_size % 512 != 0) return fail("new size {} is not a multiple of 512", new_size);
  if (new_size < header_.size)
    return fail("shrinking '{}' from {} to {} bytes is not supported", file_.path(), header_.size,
                new_size);
  const uint64_t need = l1_entries_for(new_size, cluster_bits_);
  if (need * 8 > kMaxL1Bytes) return fail("size {} needs an L1 table above 32 MiB", new_size);
  if (need > l1_.size()) {
    std::vector<uint64_t> grown = l1_;
    grown.resize(need, 0);
    SKIFF_TRY_VOID(set_l1_locked(std::move(grown)));
  }
  uint8_t buf[8];
  store_be64(buf, new_size);
  SKIFF_TRY_VOID(file_.pwrite(24, buf));
  header_.size = new_size;
  return file_.sync();
}

Result<std::vector<Qcow2Image::SnapshotL1>> Qcow2Image::snapshot_l1_tables_locked() {
  std::vector<SnapshotL1> out;
  uint64_t pos = header_.snapshots_offset;
  for (uint32_t i = 0; i < header_.nb_snapshots; ++i) {
    uint8_t fixed[kSnapshotFixedSize];
    SKIFF_TRY_VOID(check_host_range(pos, sizeof fixed, "snapshot table entry"));
    SKIFF_TRY_VOID(file_.pread(pos, fixed));
    SnapshotL1 s{load_be64(fixed), load_be32(fixed + 8)};
    const uint64_t len = kSnapshotFixedSize + uint64_t{load_be32(fixed + 36)} +
                         load_be16(fixed + 12) + load_be16(fixed + 14);
    if (s.l1_offset % cluster_size_ != 0 || s.l1_offset < cluster_size_)
      return fail("snapshot {} has invalid l1_table_offset {:#x}", i, s.l1_offset);
    if (uint64_t{s.l1_size} * 8 > kMaxL1Bytes)
      return fail("snapshot {} has l1_size {} above the 32 MiB limit", i, s.l1_size);
    SKIFF_TRY_VOID(check_host_range(s.l1_offset, uint64_t{s.l1_size} * 8, "snapshot L1 table"));
    out.push_back(s);
    pos += (len + 7) & ~7ull;
  }
  SKIFF_TRY_VOID(
      check_host_range(header_.snapshots_offset, pos - header_.snapshots_offset, "snapshot table"));
  return out;
}

Result<std::vector<Qcow2Image::SnapshotL1>> Qcow2Image::snapshot_l1_tables() {
  std::lock_guard g(mutex_);
  return snapshot_l1_tables_locked();
}

Result<> Qcow2Image::rebuild_refcounts_locked() {
  SKIFF_TRY_VOID(flush_tables_locked());
  std::vector<uint64_t> counts;
  auto ref = [&](uint64_t off, uint64_t len, const char* what) -> Result<> {
    if (len == 0) return {};
    SKIFF_TRY_VOID(check_host_range(off, len, what));
    const uint64_t last = (off + len - 1) >> cluster_bits_;
    if (counts.size() <= last) counts.resize(last + 1, 0);
    for (uint64_t c = off >> cluster_bits_; c <= last; ++c) ++counts[c];
    return {};
  };
  auto walk_l1 = [&](const std::vector<uint64_t>& l1) -> Result<> {
    for (size_t i = 0; i < l1.size(); ++i) {
      const uint64_t off = l1[i] & kL1OffsetMask;
      if (off == 0) continue;
      if (off % cluster_size_ != 0) return fail("L1 entry {} has misaligned offset {:#x}", i, off);
      SKIFF_TRY_VOID(ref(off, cluster_size_, "L2 table"));
      for (uint64_t j = 0; j < cluster_size_ / 8; ++j) {
        const uint8_t* t = SKIFF_TRY(l2_cache_->get(off));
        uint64_t e = load_be64(t + j * 8);
        if (header_.version < 3 && !(e & kOflagCompressed)) e &= ~kOflagZero;
        switch (classify_l2(e)) {
          case ClusterType::kNormal:
          case ClusterType::kZeroAllocated:
            SKIFF_TRY_VOID(ref(e & kL2OffsetMask, cluster_size_, "data cluster"));
            break;
          case ClusterType::kCompressed: {
            const CompressedDescriptor d = decode_compressed(e, cluster_bits_);
            SKIFF_TRY_VOID(
                ref(d.host_offset,
                    std::min(d.max_bytes, file_size_ - std::min(file_size_, d.host_offset)),
                    "compressed cluster"));
            break;
          }
          default:
            break;
        }
      }
    }
    return {};
  };
  SKIFF_TRY_VOID(ref(0, cluster_size_, "header"));
  SKIFF_TRY_VOID(ref(header_.l1_table_offset, l1_.size() * 8, "L1 table"));
  SKIFF_TRY_VOID(walk_l1(l1_));
  if (header_.nb_snapshots > 0) {
    const std::vector<SnapshotL1> snaps = SKIFF_TRY(snapshot_l1_tables_locked());
    uint64_t table_len = 0;
    {
      uint64_t pos = header_.snapshots_offset;
      for (uint32_t i = 0; i < header_.nb_snapshots; ++i) {
        uint8_t fixed[kSnapshotFixedSize];
        SKIFF_TRY_VOID(file_.pread(pos, fixed));
        const uint64_t len = kSnapshotFixedSize + uint64_t{load_be32(fixed + 36)} +
                             load_be16(fixed + 12) + load_be16(fixed + 14);
        pos += (len + 7) & ~7ull;
      }
      table_len = pos - header_.snapshots_offset;
    }
    SKIFF_TRY_VOID(ref(header_.snapshots_offset, table_len, "snapshot table"));
    for (const SnapshotL1& s : snaps) {
      SKIFF_TRY_VOID(ref(s.l1_offset, uint64_t{s.l1_size} * 8, "snapshot L1 table"));
      std::vector<uint8_t> raw(uint64_t{s.l1_size} * 8);
      SKIFF_TRY_VOID(file_.pread(s.l1_offset, raw));
      std::vector<uint64_t> l1(s.l1_size);
      for (size_t i = 0; i < l1.size(); ++i) l1[i] = load_be64(&raw[i * 8]);
      SKIFF_TRY_VOID(walk_l1(l1));
    }
  }
  SKIFF_TRY_VOID(refcounts_->rebuild(std::move(counts)));
  header_.refcount_table_offset = refcounts_->table_offset();
  header_.refcount_table_clusters = refcounts_->table_clusters();
  compressed_next_ = 0;
  return update_copied_flags_locked();
}

Result<> Qcow2Image::rebuild_refcounts() {
  std::lock_guard g(mutex_);
  if (read_only_) return fail("qcow2 image '{}' is open read-only", file_.path());
  return rebuild_refcounts_locked();
}

Result<> Qcow2Image::preallocate(bool full) {
  std::lock_guard g(mutex_);
  const uint64_t clusters = clusters_for(header_.size, cluster_bits_);
  for (uint64_t gc = 0; gc < clusters; ++gc) {
    SKIFF_TRY_VOID(make_l2_writable(gc >> (cluster_bits_ - 3)));
    const uint64_t at = SKIFF_TRY(refcounts_->allocate(1));
    SKIFF_TRY_VOID(set_l2_entry(gc, at | kOflagCopied));
  }
  const uint64_t end = refcounts_->end_cluster() << cluster_bits_;
  SKIFF_TRY_VOID(flush_tables_locked());
  if (full) SKIFF_TRY_VOID(file_.allocate(0, end));
  if (SKIFF_TRY(file_.size()) < end) SKIFF_TRY_VOID(file_.truncate(end));
  file_size_ = std::max(file_size_, end);
  return file_.sync();
}

}  // namespace skiff

// Qcow2Image write side: cluster allocation and copy-on-write, in-place
// overwrite of clusters we own, discard, write_zeroes and compressed writes.
// Every cluster that stops being referenced is queued in pending_frees_ and
// its refcount is only decremented after the tables no longer pointing at it
// are on disk (process_pending_frees), see flush_tables_locked(); for a
// cluster an I/O engine still has pinned (map_extent), only once the last
// pin is released (release_extent).
#include <algorithm>
#include <iterator>

#include "base/log.h"
#include "block/qcow2/compress.h"
#include "block/qcow2/format.h"
#include "block/qcow2/qcow2_image.h"
#include "block/qcow2/refcount.h"
#include "block/qcow2/table_cache.h"

namespace skiff {

using namespace qcow2;

Result<uint64_t> Qcow2Image::refcount_locked(uint64_t cluster) {
  return refcounts_->get(cluster);
}

Result<> Qcow2Image::free_host_range(uint64_t host_offset, uint64_t length) {
  if (length == 0) return {};
  pending_frees_.push_back({host_offset, length});
  return {};
}

Result<> Qcow2Image::free_entry_clusters(uint64_t entry) {
  switch (classify_l2(entry)) {
    case ClusterType::kNormal:
    case ClusterType::kZeroAllocated:
      return free_host_range(entry & kL2OffsetMask, cluster_size_);
    case ClusterType::kCompressed: {
      const CompressedDescriptor d = decode_compressed(entry, cluster_bits_);
      return free_host_range(d.host_offset, d.max_bytes);
    }
    default:
      return {};
  }
}

bool Qcow2Image::covers(std::span<const ClusterRange> sorted, uint64_t cluster) {
  auto it = std::upper_bound(sorted.begin(), sorted.end(), cluster,
                             [](uint64_t c, const ClusterRange& r) { return c < r.first; });
  return it != sorted.begin() && cluster < std::prev(it)->end;
}

std::vector<Qcow2Image::ClusterRange> Qcow2Image::pinned_ranges_locked() const {
  std::vector<ClusterRange> out;
  if (pins_held_ == 0) return out;
  for (const ClusterRange& p : pins_)
    if (p.end != 0) out.push_back(p);
  std::sort(out.begin(), out.end(),
            [](const ClusterRange& a, const ClusterRange& b) { return a.first < b.first; });
  size_t n = 0;
  for (const ClusterRange& r : out) {
    if (n > 0 && r.first <= out[n - 1].end)
      out[n - 1].end = std::max(out[n - 1].end, r.end);
    else
      out[n++] = r;
  }
  out.resize(n);
  return out;
}

Result<> Qcow2Image::process_pending_frees() {
  if (pending_frees_.empty()) return {};
  // Nothing on disk may point at a cluster whose refcount drops.
  SKIFF_TRY_VOID(flush_tables_locked());
  std::vector<PendingFree> frees;
  frees.swap(pending_frees_);
  // A cluster an I/O engine still transfers to or from keeps its reference
  // until the engine is done (map_extent, release_extent).
  const std::vector<ClusterRange> pinned = pinned_ranges_locked();
  for (const PendingFree& f : frees) {
    const uint64_t first = f.host_offset >> cluster_bits_;
    const uint64_t last = (f.host_offset + f.length - 1) >> cluster_bits_;
    for (uint64_t c = first; c <= last; ++c) {
      if (covers(pinned, c))
        deferred_frees_.push_back(c);
      else
        SKIFF_TRY_VOID(refcounts_->add(c, -1));
    }
  }
  // A freed cluster may be reused for anything now.
  compressed_next_ = 0;
  decompressed_entry_ = 0;
  return {};
}

void Qcow2Image::release_extent(uint32_t id) {
  std::lock_guard g(mutex_);
  if (id >= pins_.size() || pins_[id].end == 0) return;  // not ours: nothing held
  pins_[id] = {};
  free_pin_ids_.push_back(id);
  --pins_held_;
  if (deferred_frees_.empty()) return;
  // The tables stopped pointing at these clusters (on disk) when their
  // decrement was deferred; nothing new can point at them since (their
  // refcount kept them from being allocated), so they drop now.
  const std::vector<ClusterRange> pinned = pinned_ranges_locked();
  size_t kept = 0;
  for (uint64_t c : deferred_frees_) {
    if (covers(pinned, c)) {
      deferred_frees_[kept++] = c;
    } else if (auto r = refcounts_->add(c, -1); !r) {
      // Only leaks the cluster: the image stays consistent.
      LOG_WARN("qcow2 '{}': freeing host cluster {} after its transfer failed: {}", file_.path(), c,
               r.error().what());
    }
  }
  if (kept < deferred_frees_.size()) {
    deferred_frees_.resize(kept);
    compressed_next_ = 0;
    decompressed_entry_ = 0;
  }
}

Result<> Qcow2Image::set_l2_entry(uint64_t gc, uint64_t entry) {
  const uint64_t l2_bits = cluster_bits_ - 3;
  const uint64_t l2_off = SKIFF_TRY(l2_offset_locked(gc >> l2_bits));
  if (l2_off == 0) return fail("internal error: no L2 table for guest cluster {}", gc);
  uint8_t* t = SKIFF_TRY(l2_cache_->get(l2_off));
  store_be64(t + (gc & ((1ull << l2_bits) - 1)) * 8, entry);
  l2_cache_->mark_dirty(l2_off);
  return {};
}

// Makes the L2 table of L1 entry `l1_index` exist and be ours alone
// (refcount 1, QCOW_OFLAG_COPIED), copying a table shared with a snapshot.
Result<> Qcow2Image::make_l2_writable(uint64_t l1_index) {
  const uint64_t off = SKIFF_TRY(l2_offset_locked(l1_index));
  if (off == 0) {
    const uint64_t fresh = SKIFF_TRY(refcounts_->allocate(1));
    (void)SKIFF_TRY(l2_cache_->create(fresh));
    l1_[l1_index] = fresh | kOflagCopied;
    l1_dirty_ = true;
    return {};
  }
  if (l1_[l1_index] & kOflagCopied) return {};
  const uint64_t rc = SKIFF_TRY(refcount_locked(off >> cluster_bits_));
  if (rc == 0)
    return fail("L2 table {:#x} (L1 entry {}) has refcount 0; run 'skiff-img check -r all'", off,
                l1_index);
  if (rc == 1) {
    l1_[l1_index] = off | kOflagCopied;
    l1_dirty_ = true;
    return {};
  }
  // Shared with a snapshot: copy it. The copy's entries reference the same
  // clusters (their refcounts already count the snapshot's reference), so
  // only OFLAG_COPIED needs recomputing.
  const uint8_t* old = SKIFF_TRY(l2_cache_->get(off));
  std::vector<uint8_t> copy(old, old + cluster_size_);
  for (uint64_t i = 0; i < cluster_size_ / 8; ++i) {
    uint64_t e = load_be64(&copy[i * 8]) & ~kOflagCopied;
    const ClusterType t = classify_l2(e);
    if (t == ClusterType::kNormal || t == ClusterType::kZeroAllocated) {
      if (SKIFF_TRY(refcount_locked((e & kL2OffsetMask) >> cluster_bits_)) == 1) e |= kOflagCopied;
    }
    store_be64(&copy[i * 8], e);
  }
  const uint64_t fresh = SKIFF_TRY(refcounts_->allocate(1));
  uint8_t* t = SKIFF_TRY(l2_cache_->create(fresh));
  std::copy(copy.begin(), copy.end(), t);
  l1_[l1_index] = fresh | kOflagCopied;
  l1_dirty_ = true;
  return free_host_range(off, cluster_size_);
}

Result<> Qcow2Image::write_cluster_part(uint64_t gc, uint64_t in_cluster,
                                        std::span<const uint8_t> data) {
  SKIFF_TRY_VOID(make_l2_writable(gc >> (cluster_bits_ - 3)));
  const uint64_t entry = SKIFF_TRY(get_l2_entry(gc));
  const ClusterType type = classify_l2(entry);
  const uint64_t host = entry & kL2OffsetMask;
  bool owned = false;
  if (type == ClusterType::kNormal || type == ClusterType::kZeroAllocated) {
    SKIFF_TRY_VOID(data_host_offset(gc, entry));
    SKIFF_TRY_VOID(check_host_range(host, cluster_size_, "L2 entry's data cluster"));
    owned = (entry & kOflagCopied) || SKIFF_TRY(refcount_locked(host >> cluster_bits_)) == 1;
  }
  if (type == ClusterType::kNormal && owned) {
    SKIFF_TRY_VOID(file_.pwrite(host + in_cluster, data));
    if (!(entry & kOflagCopied)) SKIFF_TRY_VOID(set_l2_entry(gc, entry | kOflagCopied));
    return {};
  }
  // Build the whole new cluster: old contents (backing, zeroes, decompressed
  // or a shared cluster's data) overlaid with the write.
  std::vector<uint8_t> buf(cluster_size_);
  const bool full = in_cluster == 0 && data.size() == cluster_size_;
  if (!full) {
    switch (type) {
      case ClusterType::kUnallocated:
        SKIFF_TRY_VOID(read_backing(gc * cluster_size_, buf));
        break;
      case ClusterType::kZeroPlain:
      case ClusterType::kZeroAllocated:
        break;
      case ClusterType::kNormal:
        SKIFF_TRY_VOID(file_.pread(host, buf));
        break;
      case ClusterType::kCompressed:
        SKIFF_TRY_VOID(read_compressed(entry, buf));
        break;
    }
  }
  std::copy(data.begin(), data.end(), buf.begin() + static_cast<ptrdiff_t>(in_cluster));
  const bool reuse = type == ClusterType::kZeroAllocated && owned;
  const uint64_t target = reuse ? host : SKIFF_TRY(refcounts_->allocate(1));
  SKIFF_TRY_VOID(file_.pwrite(target, buf));
  file_size_ = std::max(file_size_, target + cluster_size_);
  SKIFF_TRY_VOID(set_l2_entry(gc, target | kOflagCopied));
  if (!reuse) SKIFF_TRY_VOID(free_entry_clusters(entry));
  return {};
}

Result<> Qcow2Image::write(uint64_t offset, std::span<const uint8_t> in) {
  std::lock_guard g(mutex_);
  SKIFF_TRY_VOID(check_request(offset, in.size(), true));
  while (!in.empty()) {
    const uint64_t gc = offset >> cluster_bits_;
    const uint64_t inc = offset & (cluster_size_ - 1);
    size_t n = static_cast<size_t>(std::min<uint64_t>(cluster_size_ - inc, in.size()));
    // Fast path: a data cluster that is ours alone (QCOW_OFLAG_COPIED in L1
    // and L2) is overwritten in place, together with the contiguous owned
    // clusters after it, with one pwrite and no metadata change.
    const uint64_t l1_index = gc >> (cluster_bits_ - 3);
    const uint64_t entry =
        l1_index < l1_.size() && (l1_[l1_index] & kOflagCopied) ? SKIFF_TRY(get_l2_entry(gc)) : 0;
    if (classify_l2(entry) == ClusterType::kNormal && (entry & kOflagCopied)) {
      const uint64_t host = SKIFF_TRY(data_host_offset(gc, entry));
      n = static_cast<size_t>(SKIFF_TRY(contiguous_bytes(gc, host, inc, in.size(), true)));
      SKIFF_TRY_VOID(check_host_range(host + inc, n, "L2 entry's data cluster"));
      SKIFF_TRY_VOID(file_.pwrite(host + inc, in.first(n)));
    } else {
      SKIFF_TRY_VOID(write_cluster_part(gc, inc, in.first(n)));
    }
    offset += n;
    in = in.subspan(n);
  }
  return process_pending_frees();
}

// Zeroes / discards one whole guest cluster.
Result<> Qcow2Image::zero_cluster(uint64_t gc, bool may_unmap, bool discard) {
  const bool v3 = header_.version >= 3;
  const bool has_backing = header_.has_backing();
  uint64_t entry = SKIFF_TRY(get_l2_entry(gc));
  ClusterType type = classify_l2(entry);
  uint64_t next;
  if (discard) {
    if (type == ClusterType::kUnallocated && !has_backing) return {};
    // Discarded clusters read as zeroes (not the backing file's data, as QEMU
    // does). v2 cannot mark a cluster zero; unmapping would expose the backing
    // file's data, so the discard (advisory) is skipped.
    if (!v3 && has_backing) return {};
    next = (v3 && has_backing) ? kOflagZero : 0;
  } else {
    if (type == ClusterType::kZeroPlain) return {};
    if (type == ClusterType::kZeroAllocated && !may_unmap) return {};
    if (type == ClusterType::kUnallocated && !has_backing) return {};  // already reads zeroes
    if (!v3) {
      if (!has_backing && may_unmap) {
        next = 0;
      } else {
        std::vector<uint8_t> zeroes(cluster_size_);
        return write_cluster_part(gc, 0, zeroes);
      }
    } else {
      next = kOflagZero;
    }
  }
  SKIFF_TRY_VOID(make_l2_writable(gc >> (cluster_bits_ - 3)));
  entry = SKIFF_TRY(get_l2_entry(gc));
  type = classify_l2(entry);
  if (!discard && v3 && !may_unmap && type == ClusterType::kNormal && (entry & kOflagCopied)) {
    // Keep the allocation (preallocated zero cluster, spec bit 0 note).
    return set_l2_entry(gc, entry | kOflagZero);
  }
  SKIFF_TRY_VOID(set_l2_entry(gc, next));
  return free_entry_clusters(entry);
}

namespace {
// Guest clusters entirely inside [offset, offset+length) (the disk's last,
// partial cluster counts as whole when the range reaches the disk end).
struct ClusterSplit {
  uint64_t head_end;    // end of the unaligned head
  uint64_t first_full;  // first whole cluster index
  uint64_t end_full;    // one past the last whole cluster index
  uint64_t tail_start;  // start of the unaligned tail
};
ClusterSplit split(uint64_t offset, uint64_t length, uint64_t disk_size, uint32_t bits) {
  const uint64_t cs = 1ull << bits;
  const uint64_t end = offset + length;
  const uint64_t aligned_start = (offset + cs - 1) & ~(cs - 1);
  uint64_t aligned_end = end & ~(cs - 1);
  if (end == disk_size) aligned_end = (end + cs - 1) & ~(cs - 1);
  if (aligned_start >= aligned_end) return {end, 0, 0, end};
  return {std::min(aligned_start, end), aligned_start >> bits, aligned_end >> bits,
          std::min(aligned_end, end)};
}
}  // namespace

Result<> Qcow2Image::discard(uint64_t offset, uint64_t length) {
  std::lock_guard g(mutex_);
  SKIFF_TRY_VOID(check_request(offset, length, true));
  const ClusterSplit s = split(offset, length, header_.size, cluster_bits_);
  for (uint64_t gc = s.first_full; gc < s.end_full; ++gc)
    SKIFF_TRY_VOID(zero_cluster(gc, true, true));
  return process_pending_frees();
}

Result<> Qcow2Image::write_zeroes(uint64_t offset, uint64_t length, bool may_unmap) {
  std::lock_guard g(mutex_);
  SKIFF_TRY_VOID(check_request(offset, length, true));
  const ClusterSplit s = split(offset, length, header_.size, cluster_bits_);
  std::vector<uint8_t> zeroes;
  auto partial = [&](uint64_t from, uint64_t to) -> Result<> {
    while (from < to) {
      const uint64_t inc = from & (cluster_size_ - 1);
      const uint64_t n = std::min(cluster_size_ - inc, to - from);
      zeroes.assign(n, 0);
      SKIFF_TRY_VOID(write_cluster_part(from >> cluster_bits_, inc, zeroes));
      from += n;
    }
    return {};
  };
  SKIFF_TRY_VOID(partial(offset, s.head_end));
  for (uint64_t gc = s.first_full; gc < s.end_full; ++gc)
    SKIFF_TRY_VOID(zero_cluster(gc, may_unmap, false));
  if (s.tail_start < offset + length) SKIFF_TRY_VOID(partial(s.tail_start, offset + length));
  return process_pending_frees();
}

Result<> Qcow2Image::make_empty() {
  std::lock_guard g(mutex_);
  if (read_only_) return fail("qcow2 image '{}' is open read-only", file_.path());
  // A cluster's refcount counts the L2 tables reaching it (one per L1 entry,
  // active or snapshot), so dropping an active L1 entry releases its L2 table
  // and one reference on every cluster that table points at, whether or not
  // the table is shared with a snapshot.
  for (uint64_t i = 0; i < l1_.size(); ++i) {
    const uint64_t off = SKIFF_TRY(l2_offset_locked(i));
    if (off == 0) continue;
    for (uint64_t j = 0; j < cluster_size_ / 8; ++j) {
      const uint8_t* t = SKIFF_TRY(l2_cache_->get(off));
      uint64_t e = load_be64(t + j * 8);
      if (header_.version < 3 && !(e & kOflagCompressed)) e &= ~kOflagZero;
      SKIFF_TRY_VOID(free_entry_clusters(e));
    }
    SKIFF_TRY_VOID(free_host_range(off, cluster_size_));
    l1_[i] = 0;
    l1_dirty_ = true;
  }
  // Writes the cleared L1 (and syncs) before any refcount drops.
  SKIFF_TRY_VOID(process_pending_frees());
  // The freed L2 tables may be reused as anything; forget them (all clean now).
  l2_cache_->clear();
  return {};
}

Result<> Qcow2Image::write_compressed(uint64_t cluster_index, std::span<const uint8_t> data) {
  std::lock_guard g(mutex_);
  const uint64_t offset = cluster_index << cluster_bits_;
  if (offset >= header_.size || data.size() > cluster_size_ ||
      (data.size() < cluster_size_ && offset + data.size() != header_.size))
    return fail(
        "compressed write of {} bytes to guest cluster {} does not cover one cluster of "
        "'{}'",
        data.size(), cluster_index, file_.path());
  SKIFF_TRY_VOID(check_request(offset, data.size(), true));
  std::vector<uint8_t> buf(cluster_size_, 0);
  std::copy(data.begin(), data.end(), buf.begin());
  std::vector<uint8_t> packed = SKIFF_TRY(compress_cluster(header_.compression_type, buf));
  if (packed.empty()) {  // incompressible: store it normally
    SKIFF_TRY_VOID(write_cluster_part(cluster_index, 0, buf));
    return process_pending_frees();
  }
  SKIFF_TRY_VOID(make_l2_writable(cluster_index >> (cluster_bits_ - 3)));
  const uint64_t old = SKIFF_TRY(get_l2_entry(cluster_index));
  // Pack compressed clusters back to back inside a host cluster; each
  // descriptor holds one reference on every host cluster it touches.
  uint64_t at;
  const uint64_t used = compressed_next_ & (cluster_size_ - 1);
  if (compressed_next_ != 0 && used != 0 && used + packed.size() <= cluster_size_) {
    at = compressed_next_;
    SKIFF_TRY_VOID(refcounts_->add(at >> cluster_bits_, 1));
  } else {
    at = SKIFF_TRY(refcounts_->allocate(1));
  }
  SKIFF_TRY_VOID(file_.pwrite(at, packed));
  file_size_ = std::max(file_size_, at + packed.size());
  compressed_next_ = at + packed.size();
  SKIFF_TRY_VOID(set_l2_entry(cluster_index, encode_compressed(at, packed.size(), cluster_bits_)));
  SKIFF_TRY_VOID(free_entry_clusters(old));
  return process_pending_frees();
}

}  // namespace skiff

#include "block/tools/metadata_switch.h"

#include <algorithm>

namespace skiff::qcow2tools {
namespace {

uint64_t clusters_for(uint64_t bytes, uint64_t cs) {
  return (bytes + cs - 1) / cs;
}

// Reference counts of the new state, one per host cluster, and allocation of
// clusters that are free in both states (new count 0 and current refcount 0:
// a consistent image references nothing with refcount 0, so writing there
// cannot disturb the current state).
class Plan {
 public:
  Plan(Qcow2Metadata& m, uint64_t file_size)
      : m_(m), cs_(m.cluster_size()), file_size_(file_size) {}

  [[nodiscard]] Result<> ref(uint64_t off, uint64_t len, std::string_view what) {
    if (len == 0) return {};
    if (off > file_size_ || len > file_size_ - off)
      return fail("{}: {} at {:#x} (+{}) is past the end of the file ({} bytes)", m_.path(), what,
                  off, len, file_size_);
    const uint64_t last = (off + len - 1) / cs_;
    if (counts_.size() <= last) counts_.resize(last + 1, 0);
    for (uint64_t c = off / cs_; c <= last; ++c) ++counts_[c];
    return {};
  }

  [[nodiscard]] static bool has_cluster(uint64_t e) {
    const auto t = qcow2::classify_l2(e);
    return t == qcow2::ClusterType::kNormal || t == qcow2::ClusterType::kZeroAllocated;
  }

  // The data an L2 entry references.
  [[nodiscard]] Result<> ref_entry(uint64_t e) {
    if (qcow2::classify_l2(e) == qcow2::ClusterType::kCompressed) {
      const auto d = m_.compressed_extent(e);
      if (d.host_offset >= file_size_)
        return fail("{}: compressed cluster descriptor {:#x} points past the end of the file",
                    m_.path(), e);
      return ref(d.host_offset, std::min(d.max_bytes, file_size_ - d.host_offset),
                 "compressed cluster");
    }
    if (!has_cluster(e)) return {};
    const uint64_t off = e & qcow2::kL2OffsetMask;
    if (off % cs_) return fail("{}: data cluster {:#x} is not cluster aligned", m_.path(), off);
    return ref(off, cs_, "data cluster");
  }

  [[nodiscard]] Result<std::vector<uint64_t>> read_l2(uint64_t l2_off) {
    if (l2_off % cs_) return fail("{}: L2 table {:#x} is not cluster aligned", m_.path(), l2_off);
    SKIFF_TRY_VOID(check_in_file(l2_off, cs_, "L2 table"));
    return m_.read_table(l2_off, m_.l2_entries(), "L2 table");
  }

  // An L1 table kept as it is (a snapshot's): its L2 tables and their data.
  [[nodiscard]] Result<> ref_tree(const std::vector<uint64_t>& l1) {
    for (uint64_t e1 : l1) {
      const uint64_t l2_off = e1 & qcow2::kL1OffsetMask;
      if (!l2_off) continue;
      const auto l2 = SKIFF_TRY(read_l2(l2_off));
      SKIFF_TRY_VOID(ref(l2_off, cs_, "L2 table"));
      for (uint64_t e : l2) SKIFF_TRY_VOID(ref_entry(e));
    }
    return {};
  }

  [[nodiscard]] uint64_t count(uint64_t c) const { return c < counts_.size() ? counts_[c] : 0; }
  [[nodiscard]] uint64_t end_cluster() const { return counts_.size(); }
  [[nodiscard]] const std::vector<uint64_t>& counts() const { return counts_; }
  void add_one(uint64_t c) {
    if (counts_.size() <= c) counts_.resize(c + 1, 0);
    ++counts_[c];
  }

  [[nodiscard]] Result<> check_in_file(uint64_t off, uint64_t len, std::string_view what) const {
    if (off > file_size_ || len > file_size_ - off)
      return fail("{}: {} at {:#x} is past the end of the file", m_.path(), what, off);
    return {};
  }

  // `n` contiguous clusters free in both states; their new count is 1.
  [[nodiscard]] Result<uint64_t> allocate(uint64_t n) {
    uint64_t start = hint_, run = 0;
    for (uint64_t c = hint_; run < n; ++c) {
      if (count(c) != 0 || SKIFF_TRY(m_.refcount(c)) != 0) {
        run = 0;
        start = c + 1;
        continue;
      }
      ++run;
    }
    for (uint64_t c = start; c < start + n; ++c) add_one(c);
    hint_ = start + n;
    return start * cs_;
  }

 private:
  Qcow2Metadata& m_;
  uint64_t cs_;
  uint64_t file_size_;
  std::vector<uint64_t> counts_;
  uint64_t hint_ = 1;
};

void put_be(uint8_t* p, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}

}  // namespace

Result<> switch_metadata(Qcow2Metadata& m, const MetadataState& next) {
  const auto& h = m.header();
  const uint64_t cs = m.cluster_size();
  if (h.autoclear_features & qcow2::kAutoclearBitmaps)
    return fail("{}: image has persistent dirty bitmaps, which snapshot operations do not update",
                m.path());
  if (next.active_l1.size() * 8 > qcow2::kMaxL1Bytes)
    return fail("{}: L1 table of {} entries is too large", m.path(), next.active_l1.size());
  Plan plan(m, SKIFF_TRY(m.file_size()));

  // 1. Everything the new state keeps as it is.
  SKIFF_TRY_VOID(plan.ref(0, cs, "header"));
  for (const Qcow2Snapshot& s : next.snapshots) {
    if (s.l1_table_offset == 0 && s.l1_size > 0) {
      if (next.new_snapshot_l1.size() != s.l1_size)
        return fail("internal error: new snapshot L1 has {} entries, want {}",
                    next.new_snapshot_l1.size(), s.l1_size);
      SKIFF_TRY_VOID(plan.ref_tree(next.new_snapshot_l1));
      continue;
    }
    if (s.l1_table_offset % cs)
      return fail("{}: snapshot '{}' L1 table {:#x} is not cluster aligned", m.path(), s.name,
                  s.l1_table_offset);
    SKIFF_TRY_VOID(plan.ref(s.l1_table_offset, uint64_t{s.l1_size} * 8, "snapshot L1 table"));
    const auto snap_l1 = SKIFF_TRY(m.read_table(s.l1_table_offset, s.l1_size, "snapshot L1 table"));
    SKIFF_TRY_VOID(plan.ref_tree(snap_l1));
  }
  // The active state's data (its L2 tables are decided below).
  struct ActiveTable {
    size_t l1_index;
    uint64_t offset;
    std::vector<uint64_t> entries;
  };
  std::vector<ActiveTable> active;
  for (size_t i = 0; i < next.active_l1.size(); ++i) {
    const uint64_t l2_off = next.active_l1[i] & qcow2::kL1OffsetMask;
    if (!l2_off) continue;
    ActiveTable t{i, l2_off, SKIFF_TRY(plan.read_l2(l2_off))};
    for (uint64_t e : t.entries) SKIFF_TRY_VOID(plan.ref_entry(e));
    active.push_back(std::move(t));
  }
  const uint64_t max = m.refcount_max();
  for (uint64_t c = 0; c < plan.end_cluster(); ++c)
    if (plan.count(c) > max)
      return fail(
          "{}: the refcount of cluster {} would overflow {}-bit refcounts ({} references; "
          "recreate the image with a larger refcount_bits to use snapshots)",
          m.path(), c, m.refcount_bits(), plan.count(c));

  // 2. Active L2 tables: COPIED exactly when the new refcount is 1. A table
  //    that needs no change and that no snapshot shares is kept in place;
  //    any other gets a fresh copy (never modified in place: the current
  //    state still uses it).
  std::vector<uint64_t> l1(next.active_l1.size(), 0);
  struct Copy {
    uint64_t offset;
    std::vector<uint64_t> entries;
  };
  std::vector<Copy> copies;
  for (ActiveTable& t : active) {
    bool changed = false;
    for (uint64_t& e : t.entries) {
      uint64_t want = e & ~qcow2::kOflagCopied;
      if (Plan::has_cluster(e) && plan.count((e & qcow2::kL2OffsetMask) / cs) == 1)
        want |= qcow2::kOflagCopied;
      changed |= want != e;
      e = want;
    }
    uint64_t at = t.offset;
    if (changed || plan.count(t.offset / cs) != 0) {
      at = SKIFF_TRY(plan.allocate(1));
      copies.push_back({at, std::move(t.entries)});
    } else {
      plan.add_one(t.offset / cs);
    }
    l1[t.l1_index] = at | (plan.count(at / cs) == 1 ? qcow2::kOflagCopied : 0);
  }

  // 3. New tables: active L1, a new snapshot's L1, the snapshot table.
  const uint64_t l1_at = l1.empty() ? 0 : SKIFF_TRY(plan.allocate(clusters_for(l1.size() * 8, cs)));
  std::vector<Qcow2Snapshot> snaps = next.snapshots;
  uint64_t new_snap_l1_at = 0;
  for (Qcow2Snapshot& s : snaps) {
    if (s.l1_table_offset != 0 || s.l1_size == 0) continue;
    new_snap_l1_at = SKIFF_TRY(plan.allocate(clusters_for(uint64_t{s.l1_size} * 8, cs)));
    s.l1_table_offset = new_snap_l1_at;
  }
  std::vector<uint8_t> snap_table;
  uint64_t snap_table_at = 0;
  if (!snaps.empty()) {
    snap_table = m.encode_snapshots(snaps);
    snap_table_at = SKIFF_TRY(plan.allocate(clusters_for(snap_table.size(), cs)));
  }

  // 4. A refcount structure describing all of it, itself included. Sized as
  //    if every one of its clusters went past the current end.
  const uint64_t per_block = m.refblock_entries();
  const uint64_t used = plan.end_cluster();
  uint64_t nb = 0, nt = 0;
  for (;;) {
    const uint64_t b = (used + nt + nb + per_block - 1) / per_block;
    const uint64_t t = clusters_for(b * 8, cs);
    if (b == nb && t == nt) break;
    nb = b;
    nt = t;
  }
  const uint64_t reftable_at = SKIFF_TRY(plan.allocate(nt));
  std::vector<uint64_t> reftable(nt * cs / 8, 0);
  for (uint64_t b = 0; b < nb; ++b) reftable[b] = SKIFF_TRY(plan.allocate(1));

  // 5. Write it all, sync, switch, sync.
  for (const Copy& c : copies) SKIFF_TRY_VOID(m.write_table(c.offset, c.entries));
  if (l1_at) {
    std::vector<uint64_t> padded = l1;
    padded.resize(clusters_for(l1.size() * 8, cs) * cs / 8, 0);
    SKIFF_TRY_VOID(m.write_table(l1_at, padded));
  }
  if (new_snap_l1_at) {
    std::vector<uint64_t> s = next.new_snapshot_l1;
    for (uint64_t& e : s) e &= ~qcow2::kOflagCopied;
    s.resize(clusters_for(s.size() * 8, cs) * cs / 8, 0);
    SKIFF_TRY_VOID(m.write_table(new_snap_l1_at, s));
  }
  if (snap_table_at) {
    snap_table.resize(clusters_for(snap_table.size(), cs) * cs, 0);
    SKIFF_TRY_VOID(m.pwrite_exact(snap_table_at, snap_table));
  }
  const auto& counts = plan.counts();
  for (uint64_t b = 0; b < nb; ++b) {
    std::vector<uint8_t> blk(cs, 0);
    for (uint64_t i = 0; i < per_block && b * per_block + i < counts.size(); ++i)
      qcow2::refcount_set(blk, h.refcount_order, i, counts[b * per_block + i]);
    SKIFF_TRY_VOID(m.pwrite_exact(reftable[b], blk));
  }
  SKIFF_TRY_VOID(m.write_table(reftable_at, reftable));
  SKIFF_TRY_VOID(m.sync());

  uint8_t hdr[48];  // header bytes 24..71 (qcow2.txt "Header")
  put_be(hdr + 0, next.size, 8);
  put_be(hdr + 8, h.crypt_method, 4);
  put_be(hdr + 12, l1.size(), 4);
  put_be(hdr + 16, l1_at, 8);
  put_be(hdr + 24, reftable_at, 8);
  put_be(hdr + 32, nt, 4);
  put_be(hdr + 36, snaps.size(), 4);
  put_be(hdr + 40, snap_table_at, 8);
  SKIFF_TRY_VOID(m.write_header_bytes(24, hdr));
  return m.sync();
}

}  // namespace skiff::qcow2tools

#include "block/tools/check.h"

#include <algorithm>

#include "block/tools/qcow2_metadata.h"

namespace skiff::qcow2tools {
namespace {

// The references counted by walking the metadata, one counter per host cluster.
class ReferenceCounter {
 public:
  ReferenceCounter(Qcow2Metadata& m, uint64_t file_size, CheckReport& r)
      : m_(m), r_(r), counts_((file_size + m.cluster_size() - 1) / m.cluster_size(), 0) {}

  // Counts one reference to every cluster overlapping [offset, offset+length).
  void add(uint64_t offset, uint64_t length, std::string_view what) {
    if (length == 0) return;
    const uint64_t cs = m_.cluster_size();
    uint64_t first = offset / cs, last = (offset + length - 1) / cs;
    if (last >= counts_.size()) {
      r_.messages.push_back(
          fmt::format("ERROR: {} at offset {:#x} size {:#x} exceeds the end of the file", what,
                      offset, length));
      ++r_.corruptions;
      last = counts_.empty() ? 0 : counts_.size() - 1;
      if (first > last) return;
    }
    for (uint64_t c = first; c <= last; ++c) ++counts_[c];
  }

  // Walks an L1 table and its L2 tables. The active table's COPIED flags are
  // checked later against the final refcounts.
  Result<> walk_l1(uint64_t l1_offset, uint32_t l1_size, bool active) {
    const uint64_t cs = m_.cluster_size();
    add(l1_offset, uint64_t(l1_size) * 8, "L1 table");
    auto l1 = m_.read_table(l1_offset, l1_size, "L1 table");
    if (!l1) {
      r_.messages.push_back("ERROR: " + l1.error().what());
      ++r_.corruptions;
      return {};
    }
    uint64_t prev_end = 0;
    for (uint32_t i = 0; i < l1_size; ++i) {
      uint64_t l2_off = (*l1)[i] & qcow2::kL2OffsetMask;
      if (!l2_off) continue;
      if (l2_off % cs) {
        r_.messages.push_back(fmt::format(
            "ERROR l2_offset={:#x}: Table is not cluster aligned; L1 entry corrupted", l2_off));
        ++r_.corruptions;
        continue;
      }
      add(l2_off, cs, "L2 table");
      auto l2 = m_.read_table(l2_off, m_.l2_entries(), "L2 table");
      if (!l2) continue;  // already reported by add() as past the end
      for (uint64_t j = 0; j < l2->size(); ++j) {
        uint64_t e = (*l2)[j];
        if (e & qcow2::kOflagCompressed) {
          if (e & qcow2::kOflagCopied) {
            r_.messages.push_back(fmt::format(
                "ERROR: compressed cluster at L2 entry {:#x} has the COPIED flag set", e));
            ++r_.corruptions;
          }
          auto ext = m_.compressed_extent(e);
          add(ext.host_offset, ext.max_bytes, "compressed cluster");
          if (active) {
            ++r_.allocated_clusters;
            ++r_.compressed_clusters;
          }
          continue;
        }
        uint64_t off = e & qcow2::kL2OffsetMask;
        if (!off) continue;
        if (off % cs) {
          r_.messages.push_back(fmt::format(
              "ERROR offset={:#x}: Cluster is not properly aligned; L2 entry corrupted", off));
          ++r_.corruptions;
          continue;
        }
        add(off, cs, "data cluster");
        if (active && !(e & qcow2::kOflagZero)) {
          ++r_.allocated_clusters;
          if (prev_end && off != prev_end) ++r_.fragmented_clusters;
          prev_end = off + cs;
        }
      }
    }
    return {};
  }

  std::vector<uint64_t>& counts() { return counts_; }

 private:
  Qcow2Metadata& m_;
  CheckReport& r_;
  std::vector<uint64_t> counts_;
};

// Writes a complete new refcount structure for `counts` after the end of the
// file and switches the header to it (one write of refcount_table_offset and
// refcount_table_clusters). Until that write the old structure is in force,
// and afterwards the old one is merely unreferenced space.
Result<> rebuild_refcounts(Qcow2Metadata& m, std::vector<uint64_t> counts) {
  const uint64_t cs = m.cluster_size();
  const uint64_t per_block = m.refblock_entries();
  const uint64_t base = counts.size();
  uint64_t blocks = 0, table = 0;
  for (;;) {  // fixed point: the new structure must describe itself
    uint64_t total = base + table + blocks;
    uint64_t nb = (total + per_block - 1) / per_block;
    uint64_t nt = (nb * 8 + cs - 1) / cs;
    if (nb == blocks && nt == table) break;
    blocks = nb;
    table = nt;
  }
  counts.resize(base + table + blocks, 0);
  for (uint64_t c = base; c < counts.size(); ++c) counts[c] = 1;
  const uint64_t bits = m.refcount_bits();
  std::vector<uint64_t> reftable(table * cs / 8, 0);
  for (uint64_t b = 0; b < blocks; ++b) {
    std::vector<uint8_t> blk(cs, 0);
    for (uint64_t i = 0; i < per_block && b * per_block + i < counts.size(); ++i) {
      uint64_t v = counts[b * per_block + i];
      if (v > m.refcount_max())
        return fail("{}: cluster {} has {} references, more than {}-bit refcounts hold", m.path(),
                    b * per_block + i, v, bits);
      qcow2::refcount_set(blk, m.header().refcount_order, i, v);
    }
    uint64_t off = (base + table + b) * cs;
    SKIFF_TRY_VOID(m.pwrite_exact(off, blk));
    reftable[b] = off;
  }
  SKIFF_TRY_VOID(m.write_table(base * cs, reftable));
  SKIFF_TRY_VOID(m.sync());
  SKIFF_TRY_VOID(m.replace_refcount_structure(base * cs, static_cast<uint32_t>(table)));
  SKIFF_TRY_VOID(m.sync());
  return {};
}

struct Counts {
  std::vector<uint64_t> data;  // references from everything but the refcount structure
  std::vector<uint64_t> all;   // plus the refcount table and blocks
  bool refcount_structure_broken = false;
};

// Counts references and compares them with the stored refcounts.
Result<Counts> count_and_compare(Qcow2Metadata& m, CheckReport& r) {
  const auto& h = m.header();
  const uint64_t cs = m.cluster_size();
  uint64_t fsize = SKIFF_TRY(m.file_size());
  Counts out;
  ReferenceCounter rc(m, fsize, r);
  rc.add(0, 1, "header");  // header, extensions and backing name: cluster 0
  SKIFF_TRY_VOID(rc.walk_l1(h.l1_table_offset, h.l1_size, true));
  auto snaps = m.read_snapshots();
  if (!snaps) {
    r.messages.push_back("ERROR: " + snaps.error().what());
    ++r.corruptions;
  } else {
    if (h.nb_snapshots) {
      uint64_t bytes = m.encode_snapshots(*snaps).size();
      rc.add(h.snapshots_offset, bytes, "snapshot table");
    }
    for (const auto& s : *snaps) SKIFF_TRY_VOID(rc.walk_l1(s.l1_table_offset, s.l1_size, false));
  }
  if (h.autoclear_features & 1) {
    r.messages.push_back("ERROR: persistent bitmaps are not supported by skiff-img check");
    ++r.check_errors;
  }
  out.data = rc.counts();

  rc.add(h.refcount_table_offset, uint64_t(h.refcount_table_clusters) * cs, "refcount table");
  auto table = m.read_refcount_table();
  if (!table) {
    r.messages.push_back("ERROR: " + table.error().what());
    ++r.corruptions;
    out.refcount_structure_broken = true;
    return out;
  }
  for (uint64_t i = 0; i < table->size(); ++i) {
    uint64_t off = (*table)[i] & qcow2::kL2OffsetMask;
    if (!off) continue;
    if (off % cs || off >= fsize) {
      r.messages.push_back(fmt::format("ERROR refcount block {} at {:#x} is {}", i, off,
                                       off % cs ? "not cluster aligned" : "outside the image"));
      ++r.corruptions;
      out.refcount_structure_broken = true;
      continue;
    }
    rc.add(off, cs, "refcount block");
  }
  out.all = rc.counts();
  if (out.refcount_structure_broken) return out;

  for (uint64_t c = 0; c < out.all.size(); ++c) {
    uint64_t stored = SKIFF_TRY(m.refcount(c));
    uint64_t want = out.all[c];
    // As qemu-img: the end is the last cluster that is referenced or has a refcount.
    if (want || stored) r.image_end_offset = (c + 1) * cs;
    if (stored == want) continue;
    if (stored < want) {
      r.messages.push_back(
          fmt::format("ERROR cluster {} refcount={} reference={}", c, stored, want));
      ++r.corruptions;
    } else {
      r.messages.push_back(
          fmt::format("Leaked cluster {} refcount={} reference={}", c, stored, want));
      ++r.leaks;
    }
  }
  return out;
}

}  // namespace

// COPIED must be set exactly when the refcount is 1, in the active tables
// (qcow2.txt "Cluster mapping"). With fix, rewrites the wrong entries.
Result<> check_copied_flags(Qcow2Metadata& m, CheckReport& r, bool fix) {
  const uint64_t cs = m.cluster_size();
  auto l1r = m.read_l1();
  if (!l1r) return {};  // an unreadable L1 is already counted as a corruption
  auto& l1 = *l1r;
  bool l1_dirty = false;
  for (uint64_t i = 0; i < l1.size(); ++i) {
    uint64_t l2_off = l1[i] & qcow2::kL2OffsetMask;
    if (!l2_off || l2_off % cs) continue;
    uint64_t rc = SKIFF_TRY(m.refcount(l2_off / cs));
    if ((rc == 1) != bool(l1[i] & qcow2::kOflagCopied)) {
      if (fix) {
        l1[i] = rc == 1 ? l1[i] | qcow2::kOflagCopied : l1[i] & ~qcow2::kOflagCopied;
        l1_dirty = true;
        ++r.corruptions_fixed;
      } else {
        r.messages.push_back(fmt::format(
            "ERROR OFLAG_COPIED L2 cluster: l1_index={} l1_entry={:x} refcount={}", i, l1[i], rc));
        ++r.corruptions;
      }
    }
    auto l2 = m.read_table(l2_off, m.l2_entries(), "L2 table");
    if (!l2) continue;
    bool l2_dirty = false;
    for (auto& e : *l2) {
      uint64_t off = e & qcow2::kL2OffsetMask;
      if ((e & qcow2::kOflagCompressed) || !off || off % cs) continue;
      uint64_t drc = SKIFF_TRY(m.refcount(off / cs));
      if ((drc == 1) == bool(e & qcow2::kOflagCopied)) continue;
      if (fix) {
        e = drc == 1 ? e | qcow2::kOflagCopied : e & ~qcow2::kOflagCopied;
        l2_dirty = true;
        ++r.corruptions_fixed;
      } else {
        r.messages.push_back(
            fmt::format("ERROR OFLAG_COPIED data cluster: l2_entry={:x} refcount={}", e, drc));
        ++r.corruptions;
      }
    }
    if (l2_dirty) SKIFF_TRY_VOID(m.write_table(l2_off, *l2));
  }
  if (l1_dirty) SKIFF_TRY_VOID(m.write_table(m.header().l1_table_offset, l1));
  return {};
}

Result<CheckReport> check_qcow2(const std::string& path, RepairMode mode) {
  CheckReport first;
  {
    auto m = SKIFF_TRY(Qcow2Metadata::open(path, mode != RepairMode::kNone));
    auto counts = SKIFF_TRY(count_and_compare(m, first));
    if (!counts.refcount_structure_broken) SKIFF_TRY_VOID(check_copied_flags(m, first, false));
    first.total_clusters = (m.header().size + m.cluster_size() - 1) / m.cluster_size();
    if (mode == RepairMode::kNone || (first.corruptions == 0 && first.leaks == 0)) return first;

    if (mode == RepairMode::kAll) {
      // Rebuild from the walked metadata, then make COPIED agree with it.
      SKIFF_TRY_VOID(rebuild_refcounts(m, std::move(counts.data)));
      first.rebuilt_refcounts = true;
      first.leaks_fixed = first.leaks;
      CheckReport flags;
      SKIFF_TRY_VOID(check_copied_flags(m, flags, true));
      first.corruptions_fixed = first.corruptions;
      SKIFF_TRY_VOID(m.flush());
      if (m.header().incompatible_features & qcow2::kIncompatDirty)
        SKIFF_TRY_VOID(
            m.set_incompatible(m.header().incompatible_features & ~qcow2::kIncompatDirty));
      SKIFF_TRY_VOID(m.flush());
    } else if (!counts.refcount_structure_broken) {
      // kLeaks: lower refcounts that exceed the references; never raise any.
      for (uint64_t c = 0; c < counts.all.size(); ++c) {
        uint64_t stored = SKIFF_TRY(m.refcount(c));
        if (stored > counts.all[c]) {
          SKIFF_TRY_VOID(m.set_refcount(c, counts.all[c]));
          first.messages.push_back(fmt::format("Repairing cluster {} refcount={} reference={}", c,
                                               stored, counts.all[c]));
          ++first.leaks_fixed;
        }
      }
      SKIFF_TRY_VOID(m.flush());
    }
  }
  // Double-check the repaired image, as qemu-img does; its counts are the result.
  CheckReport second;
  {
    auto m = SKIFF_TRY(Qcow2Metadata::open(path, false));
    auto counts = SKIFF_TRY(count_and_compare(m, second));
    if (!counts.refcount_structure_broken) SKIFF_TRY_VOID(check_copied_flags(m, second, false));
    second.total_clusters = first.total_clusters;
  }
  second.leaks_fixed = first.leaks_fixed;
  second.corruptions_fixed = first.corruptions_fixed;
  second.rebuilt_refcounts = first.rebuilt_refcounts;
  std::vector<std::string> msgs = std::move(first.messages);
  msgs.insert(msgs.end(), second.messages.begin(), second.messages.end());
  second.messages = std::move(msgs);
  return second;
}

}  // namespace skiff::qcow2tools

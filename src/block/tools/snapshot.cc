#include "block/tools/snapshot.h"

#include <algorithm>
#include <charconv>
#include <ctime>

#include "block/tools/check.h"

namespace skiff::qcow2tools {
namespace {

// Adds delta to the refcount of every L2 table and data cluster reachable
// from an L1 table (compressed extents may span two clusters).
Result<> update_reachable(Qcow2Metadata& m, const std::vector<uint64_t>& l1, int64_t delta) {
  const uint64_t cs = m.cluster_size();
  for (uint64_t e1 : l1) {
    uint64_t l2_off = e1 & qcow2::kL1OffsetMask;
    if (!l2_off) continue;
    if (l2_off % cs) return fail("{}: L2 table offset {:#x} not cluster aligned", m.path(), l2_off);
    auto l2 = SKIFF_TRY(m.read_table(l2_off, m.l2_entries(), "L2 table"));
    for (uint64_t e : l2) {
      switch (qcow2::classify_l2(e)) {
        case qcow2::ClusterType::kCompressed: {
          auto d = m.compressed_extent(e);
          for (uint64_t c = d.host_offset / cs; c <= (d.host_offset + d.max_bytes - 1) / cs; ++c)
            SKIFF_TRY_VOID(m.add_refcount(c, delta));
          break;
        }
        case qcow2::ClusterType::kNormal:
        case qcow2::ClusterType::kZeroAllocated: {
          uint64_t off = e & qcow2::kL2OffsetMask;
          if (off % cs) return fail("{}: data cluster {:#x} not cluster aligned", m.path(), off);
          SKIFF_TRY_VOID(m.add_refcount(off / cs, delta));
          break;
        }
        default:
          break;
      }
    }
    SKIFF_TRY_VOID(m.add_refcount(l2_off / cs, delta));
  }
  return {};
}

// Fails, before anything is written, if one more reference to any cluster
// reachable from l1 would overflow the image's refcount width.
Result<> check_headroom(Qcow2Metadata& m, const std::vector<uint64_t>& l1) {
  const uint64_t cs = m.cluster_size();
  auto need_one_more = [&](uint64_t c) -> Result<> {
    if (SKIFF_TRY(m.refcount(c)) >= m.refcount_max())
      return fail(
          "{}: refcount of cluster {} would overflow {}-bit refcounts (recreate the image "
          "with a larger refcount_bits to use snapshots)",
          m.path(), c, m.refcount_bits());
    return {};
  };
  for (uint64_t e1 : l1) {
    uint64_t l2_off = e1 & qcow2::kL1OffsetMask;
    if (!l2_off) continue;
    SKIFF_TRY_VOID(need_one_more(l2_off / cs));
    auto l2 = SKIFF_TRY(m.read_table(l2_off, m.l2_entries(), "L2 table"));
    for (uint64_t e : l2) {
      auto t = qcow2::classify_l2(e);
      if (t == qcow2::ClusterType::kCompressed) {
        SKIFF_TRY_VOID(need_one_more(m.compressed_extent(e).host_offset / cs));
      } else if (t == qcow2::ClusterType::kNormal || t == qcow2::ClusterType::kZeroAllocated) {
        SKIFF_TRY_VOID(need_one_more((e & qcow2::kL2OffsetMask) / cs));
      }
    }
  }
  return {};
}

Result<Qcow2Metadata> open_for_update(const std::string& path) {
  auto m = SKIFF_TRY(Qcow2Metadata::open(path, true));
  const auto& h = m.header();
  if (h.incompatible_features & qcow2::kIncompatCorrupt)
    return fail("{}: image is marked corrupt; run 'skiff-img check -r all' first", path);
  if (h.incompatible_features & qcow2::kIncompatDirty)
    return fail("{}: image is dirty (lazy refcounts); run 'skiff-img check -r all' first", path);
  return m;
}

uint64_t clusters_for(const Qcow2Metadata& m, uint64_t bytes) {
  return (bytes + m.cluster_size() - 1) / m.cluster_size();
}

// Writes a new snapshot table, switches the header to it, frees the old one.
Result<> replace_snapshot_table(Qcow2Metadata& m, const std::vector<Qcow2Snapshot>& snaps) {
  const auto old_off = m.header().snapshots_offset;
  const auto old_bytes =
      m.header().nb_snapshots ? m.encode_snapshots(SKIFF_TRY(m.read_snapshots())).size() : 0;
  uint64_t new_off = 0;
  if (!snaps.empty()) {
    auto bytes = m.encode_snapshots(snaps);
    new_off = SKIFF_TRY(m.allocate(clusters_for(m, bytes.size())));
    SKIFF_TRY_VOID(m.pwrite_exact(new_off, bytes));
    SKIFF_TRY_VOID(m.flush());
  }
  SKIFF_TRY_VOID(m.set_snapshot_fields(static_cast<uint32_t>(snaps.size()), new_off));
  SKIFF_TRY_VOID(m.sync());
  for (uint64_t c = 0; c < clusters_for(m, old_bytes); ++c)
    SKIFF_TRY_VOID(m.add_refcount(old_off / m.cluster_size() + c, -1));
  return m.flush();
}

Result<size_t> find_snapshot(const std::vector<Qcow2Snapshot>& snaps, const std::string& key,
                             const std::string& path) {
  for (size_t i = 0; i < snaps.size(); ++i)
    if (snaps[i].id == key) return i;
  for (size_t i = 0; i < snaps.size(); ++i)
    if (snaps[i].name == key) return i;
  return fail("{}: no snapshot with ID or name '{}'", path, key);
}

Result<> fix_copied(Qcow2Metadata& m) {
  CheckReport scratch;
  SKIFF_TRY_VOID(check_copied_flags(m, scratch, true));
  return m.flush();
}

}  // namespace

Result<std::vector<Qcow2Snapshot>> list_snapshots(const std::string& path) {
  auto m = SKIFF_TRY(Qcow2Metadata::open(path, false));
  return m.read_snapshots();
}

Result<> create_snapshot(const std::string& path, const std::string& name) {
  if (name.empty() || name.size() > 0xffff) return fail("invalid snapshot name '{}'", name);
  auto m = SKIFF_TRY(open_for_update(path));
  auto snaps = SKIFF_TRY(m.read_snapshots());
  if (snaps.size() >= qcow2::kMaxSnapshots) return fail("{}: too many snapshots", path);
  const auto& h = m.header();
  auto l1 = SKIFF_TRY(m.read_l1());
  SKIFF_TRY_VOID(check_headroom(m, l1));

  // 1. The active tables stop claiming exclusive ownership (COPIED) before
  //    the refcounts go to 2: in between a crash costs only extra COW.
  for (auto& e1 : l1) {
    uint64_t l2_off = e1 & qcow2::kL1OffsetMask;
    if (!l2_off) continue;
    auto l2 = SKIFF_TRY(m.read_table(l2_off, m.l2_entries(), "L2 table"));
    bool changed = false;
    for (auto& e : l2)
      if (e & qcow2::kOflagCopied) {
        e &= ~qcow2::kOflagCopied;
        changed = true;
      }
    if (changed) SKIFF_TRY_VOID(m.write_table(l2_off, l2));
    e1 &= ~qcow2::kOflagCopied;
  }
  SKIFF_TRY_VOID(m.write_table(h.l1_table_offset, l1));
  SKIFF_TRY_VOID(m.sync());

  // 2. References from the snapshot's copy of L1, and the copy itself.
  SKIFF_TRY_VOID(update_reachable(m, l1, +1));
  uint64_t l1_copy = 0;
  if (!l1.empty()) {
    l1_copy = SKIFF_TRY(m.allocate(clusters_for(m, l1.size() * 8)));
    SKIFF_TRY_VOID(m.write_table(l1_copy, l1));
  }
  SKIFF_TRY_VOID(m.flush());

  // 3. The new table entry, linked by the header write.
  Qcow2Snapshot s;
  s.l1_table_offset = l1_copy;
  s.l1_size = static_cast<uint32_t>(l1.size());
  uint64_t max_id = 0;
  for (const auto& o : snaps) {
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(o.id.data(), o.id.data() + o.id.size(), v);
    if (ec == std::errc() && p == o.id.data() + o.id.size()) max_id = std::max(max_id, v);
  }
  s.id = std::to_string(max_id + 1);
  s.name = name;
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  s.date_sec = static_cast<uint32_t>(now.tv_sec);
  s.date_nsec = static_cast<uint32_t>(now.tv_nsec / 1000 * 1000);  // QEMU keeps microseconds
  s.disk_size = h.size;
  s.icount = 0;
  snaps.push_back(std::move(s));
  return replace_snapshot_table(m, snaps);
}

Result<> apply_snapshot(const std::string& path, const std::string& key) {
  auto m = SKIFF_TRY(open_for_update(path));
  auto snaps = SKIFF_TRY(m.read_snapshots());
  const Qcow2Snapshot sn = snaps[SKIFF_TRY(find_snapshot(snaps, key, path))];
  const auto h = m.header();
  auto target = SKIFF_TRY(m.read_table(sn.l1_table_offset, sn.l1_size, "snapshot L1 table"));
  auto old_l1 = SKIFF_TRY(m.read_l1());
  uint64_t size = sn.disk_size.value_or(h.size);
  const uint64_t per_l2 = m.l2_entries() * m.cluster_size();
  uint64_t need = size / per_l2 + (size % per_l2 != 0);
  if (target.size() < need) target.resize(need, 0);
  SKIFF_TRY_VOID(check_headroom(m, target));

  // 1. The snapshot's clusters gain the active table's reference first.
  SKIFF_TRY_VOID(update_reachable(m, target, +1));
  SKIFF_TRY_VOID(m.flush());

  // 2. Switch the active L1: in place when it fits, else a new table linked
  //    by one header write. Until step 3 the old clusters merely leak.
  if (target.size() <= h.l1_size) {
    target.resize(h.l1_size, 0);
    SKIFF_TRY_VOID(m.write_table(h.l1_table_offset, target));
    SKIFF_TRY_VOID(m.sync());
  } else {
    uint64_t off = SKIFF_TRY(m.allocate(clusters_for(m, target.size() * 8)));
    SKIFF_TRY_VOID(m.write_table(off, target));
    SKIFF_TRY_VOID(m.flush());
    SKIFF_TRY_VOID(m.set_l1_fields(static_cast<uint32_t>(target.size()), off));
    SKIFF_TRY_VOID(m.sync());
    for (uint64_t c = 0; c < clusters_for(m, uint64_t(h.l1_size) * 8); ++c)
      SKIFF_TRY_VOID(m.add_refcount(h.l1_table_offset / m.cluster_size() + c, -1));
  }
  if (size != h.size) {
    SKIFF_TRY_VOID(m.set_size(size));
    SKIFF_TRY_VOID(m.sync());
  }

  // 3. The previous active state's references go away.
  SKIFF_TRY_VOID(update_reachable(m, old_l1, -1));
  SKIFF_TRY_VOID(m.flush());
  return fix_copied(m);
}

Result<> delete_snapshot(const std::string& path, const std::string& key) {
  auto m = SKIFF_TRY(open_for_update(path));
  auto snaps = SKIFF_TRY(m.read_snapshots());
  size_t idx = SKIFF_TRY(find_snapshot(snaps, key, path));
  const Qcow2Snapshot sn = snaps[idx];
  auto l1 = SKIFF_TRY(m.read_table(sn.l1_table_offset, sn.l1_size, "snapshot L1 table"));
  // Unlink first (one header write), then release: a crash in between leaks.
  snaps.erase(snaps.begin() + static_cast<long>(idx));
  SKIFF_TRY_VOID(replace_snapshot_table(m, snaps));
  SKIFF_TRY_VOID(update_reachable(m, l1, -1));
  for (uint64_t c = 0; c < clusters_for(m, uint64_t(sn.l1_size) * 8); ++c)
    SKIFF_TRY_VOID(m.add_refcount(sn.l1_table_offset / m.cluster_size() + c, -1));
  SKIFF_TRY_VOID(m.flush());
  return fix_copied(m);
}

}  // namespace skiff::qcow2tools

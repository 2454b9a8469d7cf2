#include "block/tools/snapshot.h"

#include <algorithm>
#include <charconv>
#include <ctime>

#include "block/tools/metadata_switch.h"

namespace skiff::qcow2tools {
namespace {

Result<Qcow2Metadata> open_for_update(const std::string& path) {
  auto m = SKIFF_TRY(Qcow2Metadata::open(path, true));
  const auto& h = m.header();
  if (h.incompatible_features & qcow2::kIncompatCorrupt)
    return fail("{}: image is marked corrupt; run 'skiff-img check -r all' first", path);
  if (h.incompatible_features & qcow2::kIncompatDirty)
    return fail("{}: image is dirty (lazy refcounts); run 'skiff-img check -r all' first", path);
  return m;
}

Result<size_t> find_snapshot(const std::vector<Qcow2Snapshot>& snaps, const std::string& key,
                             const std::string& path) {
  for (size_t i = 0; i < snaps.size(); ++i)
    if (snaps[i].id == key) return i;
  for (size_t i = 0; i < snaps.size(); ++i)
    if (snaps[i].name == key) return i;
  return fail("{}: no snapshot with ID or name '{}'", path, key);
}

// The current state, to be modified by one operation.
Result<MetadataState> current_state(Qcow2Metadata& m) {
  MetadataState s;
  s.size = m.header().size;
  s.active_l1 = SKIFF_TRY(m.read_l1());
  s.snapshots = SKIFF_TRY(m.read_snapshots());
  return s;
}

}  // namespace

Result<std::vector<Qcow2Snapshot>> list_snapshots(const std::string& path) {
  auto m = SKIFF_TRY(Qcow2Metadata::open(path, false));
  return m.read_snapshots();
}

Result<> create_snapshot(const std::string& path, const std::string& name) {
  if (name.empty() || name.size() > 0xffff) return fail("invalid snapshot name '{}'", name);
  auto m = SKIFF_TRY(open_for_update(path));
  MetadataState next = SKIFF_TRY(current_state(m));
  if (next.snapshots.size() >= qcow2::kMaxSnapshots) return fail("{}: too many snapshots", path);
  Qcow2Snapshot s;
  s.l1_table_offset = 0;  // switch_metadata writes new_snapshot_l1 for it
  s.l1_size = static_cast<uint32_t>(next.active_l1.size());
  uint64_t max_id = 0;
  for (const auto& o : next.snapshots) {
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
  s.disk_size = next.size;
  s.icount = 0;
  next.new_snapshot_l1 = next.active_l1;
  next.snapshots.push_back(std::move(s));
  return switch_metadata(m, next);
}

Result<> apply_snapshot(const std::string& path, const std::string& key) {
  auto m = SKIFF_TRY(open_for_update(path));
  MetadataState next = SKIFF_TRY(current_state(m));
  const Qcow2Snapshot& sn = next.snapshots[SKIFF_TRY(find_snapshot(next.snapshots, key, path))];
  auto target = SKIFF_TRY(m.read_table(sn.l1_table_offset, sn.l1_size, "snapshot L1 table"));
  next.size = sn.disk_size.value_or(next.size);
  const uint64_t per_l2 = m.l2_entries() * m.cluster_size();
  const uint64_t need = next.size / per_l2 + (next.size % per_l2 != 0);
  target.resize(std::max<uint64_t>({target.size(), need, m.header().l1_size}), 0);
  next.active_l1 = std::move(target);
  return switch_metadata(m, next);
}

Result<> delete_snapshot(const std::string& path, const std::string& key) {
  auto m = SKIFF_TRY(open_for_update(path));
  MetadataState next = SKIFF_TRY(current_state(m));
  const size_t idx = SKIFF_TRY(find_snapshot(next.snapshots, key, path));
  next.snapshots.erase(next.snapshots.begin() + static_cast<long>(idx));
  return switch_metadata(m, next);
}

}  // namespace skiff::qcow2tools

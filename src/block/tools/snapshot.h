// Internal snapshots of a qcow2 image (qcow2.txt "Snapshots"), the engine of
// `skiff-img snapshot -c/-l/-a/-d`. Works on a closed image file.
//
// Refcount rule (as QEMU): a cluster's refcount counts every L1 table entry
// (active or snapshot) that reaches it; COPIED flags in the active tables are
// set exactly when the refcount is 1.
//
// Crash consistency: each operation builds the complete new metadata state in
// free clusters and switches to it with one header write (metadata_switch.h),
// so a crash leaves either the old or the new state, both clean for
// `qemu-img check` (not even leaks).
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "block/tools/qcow2_metadata.h"

namespace skiff::qcow2tools {

[[nodiscard]] Result<std::vector<Qcow2Snapshot>> list_snapshots(const std::string& path);
// New snapshot of the current disk state; its ID is one more than the
// largest numeric ID (as QEMU). Names may repeat (as QEMU allows).
[[nodiscard]] Result<> create_snapshot(const std::string& path, const std::string& name);
// The disk reverts to the snapshot `id_or_name` (ID first, then name).
[[nodiscard]] Result<> apply_snapshot(const std::string& path, const std::string& id_or_name);
[[nodiscard]] Result<> delete_snapshot(const std::string& path, const std::string& id_or_name);

}  // namespace skiff::qcow2tools

// Internal snapshots of a qcow2 image (qcow2.txt "Snapshots"), the engine of
// `skiff-img snapshot -c/-l/-a/-d`. Works on a closed image file.
//
// Refcount rule (as QEMU): a cluster's refcount counts every L1 table entry
// (active or snapshot) that reaches it, so creating a snapshot adds one to
// each L2 table and data cluster reachable from the active L1, and deleting
// one subtracts one. COPIED flags in the active tables are then recomputed
// (set exactly when the refcount is 1).
//
// Crash consistency: every step first makes new references' refcounts
// durable and only then links them, and unlinks before it decrements; the
// header's nb_snapshots/snapshots_offset pair is switched by one write, last
// for create, first for delete. A crash leaves at worst leaked clusters
// (and possibly COPIED flags that are merely too conservative).
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

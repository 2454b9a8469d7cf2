// switch_metadata: moves a qcow2 image from its current metadata state to a
// new one (active L1, virtual size, snapshot table) with a single header
// write, for the snapshot operations.
//
// Why not update in place: `qemu-img check` counts a COPIED flag that
// disagrees with the refcount as corruption in either direction, and a
// snapshot operation changes refcounts (refcount blocks) and COPIED flags
// (L2 tables) in different clusters, so no write order keeps every crash
// point clean. Instead everything the new state needs that differs from the
// old one — copies of the active L2 tables with recomputed COPIED flags, the
// active L1 table, a new snapshot's L1 table, the snapshot table and a
// complete refcount table and blocks counting the new state — is written to
// clusters that neither state uses, synced, and then header bytes 24..71
// (size, l1_size, l1_table_offset, refcount_table_offset/clusters,
// nb_snapshots, snapshots_offset: one 48-byte write inside the first sector)
// switch to it. A crash before that write leaves the old state untouched; after
// it the new state is complete, and the old state's private clusters simply
// have refcount 0 (no leaks at all).
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"
#include "block/tools/qcow2_metadata.h"

namespace skiff::qcow2tools {

struct MetadataState {
  uint64_t size = 0;  // virtual disk size
  // Active L1 entries: offsets of L2 tables that exist in the file now
  // (flags are ignored and recomputed).
  std::vector<uint64_t> active_l1;
  // The snapshot table. An entry with l1_table_offset 0 and l1_size > 0 gets
  // `new_snapshot_l1` written as its L1 table (snapshot create).
  std::vector<Qcow2Snapshot> snapshots;
  std::vector<uint64_t> new_snapshot_l1;
};

// Fails before writing anything if a refcount of the new state would
// overflow the image's refcount width or a table points outside the file.
[[nodiscard]] Result<> switch_metadata(Qcow2Metadata& m, const MetadataState& next);

}  // namespace skiff::qcow2tools

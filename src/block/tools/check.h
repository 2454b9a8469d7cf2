// Consistency check and repair of a qcow2 image, as `qemu-img check` does it:
// walk every piece of metadata (header, L1/L2 tables of the active state and
// of each snapshot, compressed extents, refcount table and blocks, snapshot
// table), count the references to each host cluster, and compare the counts
// with the stored refcounts and the COPIED flags (qcow2.txt "Host cluster
// management", "Cluster mapping").
//
// Repair: kLeaks lowers refcounts that are too high in place; kAll rebuilds
// the whole refcount structure from the counted references (a new table and
// new blocks at the end of the file, switched in by one header write) and
// then fixes COPIED flags.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace skiff::qcow2tools {

enum class RepairMode { kNone, kLeaks, kAll };

struct CheckReport {
  uint64_t corruptions = 0;
  uint64_t leaks = 0;
  uint64_t check_errors = 0;
  uint64_t corruptions_fixed = 0;
  uint64_t leaks_fixed = 0;
  uint64_t image_end_offset = 0;
  uint64_t total_clusters = 0;  // guest clusters of the virtual disk
  uint64_t allocated_clusters = 0;
  uint64_t fragmented_clusters = 0;
  uint64_t compressed_clusters = 0;
  bool rebuilt_refcounts = false;
  std::vector<std::string> messages;  // one line each: "ERROR ...", "Leaked cluster ..."
};

class Qcow2Metadata;

// Compares the active tables' COPIED flags with the refcounts; with fix,
// rewrites the entries that disagree (counted in corruptions_fixed).
[[nodiscard]] Result<> check_copied_flags(Qcow2Metadata& m, CheckReport& r, bool fix);

// Checks (and with a repair mode, repairs) the image at path. An error means
// the check could not run (qemu-img's exit code 1).
[[nodiscard]] Result<CheckReport> check_qcow2(const std::string& path, RepairMode mode);

}  // namespace skiff::qcow2tools

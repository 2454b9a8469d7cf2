// RefcountTable: the refcount table and its refcount blocks (spec: "Host
// cluster management"), with a write-back block cache, cluster allocation
// (first fit from a hint, reusing freed space) and refcount table growth.
//
// Ordering: new refcount blocks are written before the table entry that
// points at them, and a grown table is written and synced before the header
// is switched to it; the old table is freed only afterwards. Refcount block
// updates themselves are write-back: the owner flushes them (flush()) before
// writing any L2/L1 entry that depends on them.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "base/result.h"
#include "block/host_file.h"
#include "block/qcow2/table_cache.h"

namespace skiff::qcow2 {

class RefcountTable {
 public:
  // `file_size` is updated when clusters beyond it are written (shared with
  // the image).
  RefcountTable(HostFile& file, uint64_t& file_size, uint32_t cluster_bits, uint32_t refcount_order,
                size_t cache_bytes);

  // Reads the table (validated against the file size).
  [[nodiscard]] Result<> load(uint64_t table_offset, uint32_t table_clusters);

  [[nodiscard]] uint64_t table_offset() const { return table_offset_; }
  [[nodiscard]] uint32_t table_clusters() const { return table_clusters_; }
  [[nodiscard]] const std::vector<uint64_t>& table() const { return table_; }

  // Refcount of host cluster `cluster` (0 if not covered by a block).
  [[nodiscard]] Result<uint64_t> get(uint64_t cluster);
  // Adds delta to one cluster's refcount (creating its block if needed).
  // Fails on overflow / underflow naming the cluster.
  [[nodiscard]] Result<> add(uint64_t cluster, int64_t delta);
  // Finds `count` contiguous free clusters and sets their refcount to 1.
  [[nodiscard]] Result<uint64_t> allocate(uint64_t count);

  // Writes dirty refcount blocks (no sync).
  [[nodiscard]] Result<> flush();
  [[nodiscard]] bool dirty() const { return cache_.has_dirty(); }
  void clear_cache() { cache_.clear(); }

  // One past the highest cluster that may be in use (allocation frontier).
  [[nodiscard]] uint64_t end_cluster() const;

  // Writes a complete new refcount structure for `counts` (refcount of each
  // cluster index < counts.size()) after all clusters in use, syncs, and
  // switches the header to it (repair / dirty-bit rebuild).
  [[nodiscard]] Result<> rebuild(std::vector<uint64_t> counts);

 private:
  [[nodiscard]] uint64_t block_entries() const { return block_entries_; }
  [[nodiscard]] Result<uint64_t> block_offset(uint64_t table_index) const;
  [[nodiscard]] Result<> set_in_existing_block(uint64_t cluster, uint64_t value);
  [[nodiscard]] Result<uint64_t> find_free(uint64_t count);
  // Makes sure table entry `table_index` has a refcount block (may allocate;
  // may grow the table). Returns true if anything was allocated.
  [[nodiscard]] Result<bool> ensure_block(uint64_t table_index);
  [[nodiscard]] Result<> grow_table(uint64_t min_entries);
  [[nodiscard]] Result<> write_table_entry(uint64_t table_index);
  [[nodiscard]] Result<> switch_header(uint64_t offset, uint32_t clusters);
  // Lays out new blocks + a table of `entries` entries starting at cluster
  // `start`: returns (number of new blocks, table clusters).
  struct Layout {
    uint64_t start = 0;
    uint64_t table_entries = 0;
    uint64_t table_clusters = 0;
    std::vector<uint64_t> new_blocks;  // table indices needing a new block
  };

  HostFile& file_;
  uint64_t& file_size_;
  uint32_t cluster_bits_;
  uint64_t cluster_size_;
  uint32_t order_;
  uint64_t block_entries_;
  uint64_t table_offset_ = 0;
  uint32_t table_clusters_ = 0;
  std::vector<uint64_t> table_;  // host-endian; size = table_clusters * cluster_size / 8
  TableCache cache_;
  uint64_t free_hint_ = 0;
  uint64_t alloc_end_ = 0;  // highest allocated cluster + 1 seen this session
};

}  // namespace skiff::qcow2

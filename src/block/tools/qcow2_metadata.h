// Qcow2Metadata: direct, validated access to a qcow2 file's metadata (header,
// L1/L2 tables, refcounts, snapshot table) for the offline tools behind
// `skiff-img check` and `skiff-img snapshot`. It does not read guest data and
// keeps no L2 cache: the tools walk every table once. Refcount blocks are
// cached and written back by flush(), so callers order their crash-sensitive
// steps with explicit flush() calls (qcow2.txt "Host cluster management").
//
// Every offset and size from the file is checked before use; errors name the
// field. Not supported: encryption, external data files, extended L2 entries
// (refused with a message saying so).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "block/host_file.h"
#include "block/qcow2/format.h"
#include "block/qcow2/header.h"

namespace skiff::qcow2tools {

// One snapshot table entry, qcow2.txt "Snapshots".
struct Qcow2Snapshot {
  uint64_t l1_table_offset = 0;
  uint32_t l1_size = 0;
  std::string id;
  std::string name;
  uint32_t date_sec = 0;
  uint32_t date_nsec = 0;
  uint64_t vm_clock_nsec = 0;
  uint64_t vm_state_size = 0;
  std::optional<uint64_t> disk_size;  // extra data bytes 48-55, when present
  std::optional<uint64_t> icount;     // extra data bytes 56-63 (QEMU 5.2+), when present
  std::vector<uint8_t> extra_tail;    // extra data past byte 63, preserved as is
};

class Qcow2Metadata {
 public:
  // Opens and validates the header; writable opens O_RDWR.
  [[nodiscard]] static Result<Qcow2Metadata> open(const std::string& path, bool writable);

  [[nodiscard]] const qcow2::Qcow2Header& header() const { return h_; }
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] Result<> sync() { return file_.sync(); }
  [[nodiscard]] uint64_t cluster_size() const { return 1ULL << h_.cluster_bits; }
  [[nodiscard]] uint64_t l2_entries() const { return cluster_size() / 8; }
  [[nodiscard]] uint64_t refcount_bits() const { return 1ULL << h_.refcount_order; }
  [[nodiscard]] uint64_t refcount_max() const { return qcow2::refcount_max(h_.refcount_order); }
  [[nodiscard]] uint64_t refblock_entries() const { return cluster_size() * 8 / refcount_bits(); }
  [[nodiscard]] const std::string& backing_file() const { return h_.backing_file; }
  [[nodiscard]] std::string backing_format() const { return h_.backing_format.value_or(""); }
  [[nodiscard]] Result<uint64_t> file_size() const;
  [[nodiscard]] qcow2::CompressedDescriptor compressed_extent(uint64_t l2_entry) const {
    return qcow2::decode_compressed(l2_entry, h_.cluster_bits);
  }

  // Big-endian tables of 64-bit entries.
  [[nodiscard]] Result<std::vector<uint64_t>> read_table(uint64_t offset, uint64_t entries,
                                                         std::string_view what) const;
  [[nodiscard]] Result<> write_table(uint64_t offset, const std::vector<uint64_t>& table);
  [[nodiscard]] Result<std::vector<uint64_t>> read_l1() const;
  [[nodiscard]] Result<std::vector<uint64_t>> read_refcount_table() const;
  [[nodiscard]] Result<> pread_exact(uint64_t offset, std::span<uint8_t> out) const {
    return file_.pread(offset, out);
  }
  [[nodiscard]] Result<> pwrite_exact(uint64_t offset, std::span<const uint8_t> in) {
    return file_.pwrite(offset, in);
  }

  // Refcount of a host cluster (0 when its refcount block is absent).
  [[nodiscard]] Result<uint64_t> refcount(uint64_t cluster);
  // Sets a refcount, allocating a refcount block (and growing the table) if needed.
  [[nodiscard]] Result<> set_refcount(uint64_t cluster, uint64_t value);
  [[nodiscard]] Result<> add_refcount(uint64_t cluster, int64_t delta);
  // Finds n contiguous free clusters (reusing freed space first), sets their refcount to 1.
  [[nodiscard]] Result<uint64_t> allocate(uint64_t nclusters);

  [[nodiscard]] Result<std::vector<Qcow2Snapshot>> read_snapshots() const;
  // Serialises a snapshot table (entries padded to 8 bytes).
  [[nodiscard]] std::vector<uint8_t> encode_snapshots(const std::vector<Qcow2Snapshot>& s) const;

  // Rewrites header bytes [offset, offset+bytes.size()) in one pwrite.
  [[nodiscard]] Result<> write_header_bytes(uint64_t offset, std::span<const uint8_t> bytes);
  [[nodiscard]] Result<> set_snapshot_fields(uint32_t nb, uint64_t offset);
  [[nodiscard]] Result<> set_l1_fields(uint32_t l1_size, uint64_t offset);
  [[nodiscard]] Result<> set_refcount_table_fields(uint64_t offset, uint32_t clusters);
  [[nodiscard]] Result<> set_size(uint64_t size);
  [[nodiscard]] Result<> set_incompatible(uint64_t bits);

  // Writes cached refcount blocks back, then fdatasync.
  [[nodiscard]] Result<> flush();
  // Points the header at a freshly written refcount table and reloads it.
  [[nodiscard]] Result<> replace_refcount_structure(uint64_t table_offset, uint32_t clusters);

 private:
  explicit Qcow2Metadata(HostFile f) : file_(std::move(f)) {}
  [[nodiscard]] Result<> parse_header();
  [[nodiscard]] Result<std::vector<uint8_t>*> refblock(uint64_t table_index, bool create);
  [[nodiscard]] Result<> grow_refcount_table(uint64_t min_entries);
  [[nodiscard]] Result<> flush_refblocks();

  struct CachedBlock {
    uint64_t offset = 0;
    std::vector<uint8_t> bytes;
    bool dirty = false;
  };

  HostFile file_;
  std::string path_;
  bool writable_ = false;
  qcow2::Qcow2Header h_;
  std::vector<uint64_t> reftable_;
  std::map<uint64_t, CachedBlock> refblocks_;  // by refcount table index
  std::set<uint64_t> reftable_dirty_;          // table entries not yet written
  uint64_t alloc_hint_ = 0;                    // first cluster that may be free
};

}  // namespace skiff::qcow2tools

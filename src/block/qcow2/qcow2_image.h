// Qcow2Image: a qcow2 v2/v3 image as a DiskImage (spec ../shared/specs/qcow2.txt).
//
// Supported: header + extensions (unknown ones preserved), L1/L2 with a
// bounded LRU L2 cache, refcounts of any order with a refcount block cache,
// allocation with free-space reuse and refcount table growth, zero clusters,
// discard, compressed clusters (read zlib/zstd, write via write_compressed),
// backing chains of any depth, the dirty bit (refcounts rebuilt on writable
// open) and the corrupt bit (writable open refused).
// Not supported (refused at open, naming the bit): encryption, external data
// files, extended L2 entries.
//
// Crash safety (spec "Host cluster management", QEMU's ordering): a cluster's
// refcount reaches the disk before any L2/L1 entry that points at it, and an
// L2/L1 entry stops pointing at a cluster on disk before its refcount is
// decremented on disk. So a crash at any point leaves at most leaked clusters.
// See flush_tables_locked() in qcow2_image.cc for the write order.
//
// Threading: every public method takes the image's (recursive) mutex, so
// callers may also hold it (lock()) across several calls to make them atomic.
// Extents handed to an I/O engine (map_extent) are pinned until the engine's
// transfer is over, so a concurrent discard cannot get their host clusters
// reused (see map_extent).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "block/disk_image.h"
#include "block/host_file.h"
#include "block/open_image.h"
#include "block/qcow2/create.h"
#include "block/qcow2/header.h"

namespace skiff {

namespace qcow2 {
class TableCache;
class RefcountTable;
}  // namespace qcow2

class Qcow2Image final : public DiskImage {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Qcow2Image>> open(const std::string& path,
                                                                const OpenImageOptions& options);
  ~Qcow2Image() override;  // flushes metadata; errors are logged

  // --- DiskImage ---
  [[nodiscard]] uint64_t size() const override;
  [[nodiscard]] bool read_only() const override { return read_only_; }
  [[nodiscard]] std::string format() const override { return "qcow2"; }
  [[nodiscard]] Result<> read(uint64_t offset, std::span<uint8_t> out) override;
  [[nodiscard]] Result<> write(uint64_t offset, std::span<const uint8_t> in) override;
  [[nodiscard]] Result<> flush() override;
  [[nodiscard]] Result<> discard(uint64_t offset, uint64_t length) override;
  [[nodiscard]] Result<> write_zeroes(uint64_t offset, uint64_t length, bool may_unmap) override;
  [[nodiscard]] Result<ExtentStatus> block_status(uint64_t offset, uint64_t length) override;
  // For I/O engines (virtio-blk's io_uring path): a range inside one run of
  // contiguous allocated data clusters of this image maps to the file; for
  // writes only clusters that are ours alone (QCOW_OFLAG_COPIED in L1 and
  // L2), exactly the in-place fast path of write(). Everything else
  // (unallocated, zero, compressed, backing, copy-on-write) is nullopt and
  // goes through read()/write().
  //
  // In-flight extents: the engine's transfer runs outside the image's lock,
  // possibly while another queue discards or zeroes the same clusters. So
  // each mapping pins its host clusters (HostExtent::pin) until the engine
  // drops the pin, and a refcount decrement of a pinned host cluster is
  // deferred until its last pin goes (release_extent): the cluster keeps a
  // refcount >= 1, so allocate_clusters() never hands it to other data or
  // metadata while an old transfer may still read or write it. The L2 entry
  // stops pointing at it at once (the discard is visible to later requests)
  // and that table change is on disk before the deferred decrement, as for
  // any free. The transfer itself lands in (or reads) the orphaned cluster,
  // which is what unordered concurrent requests may see (virtio 1.2 §5.2.6).
  // A crash while a decrement is deferred leaks the cluster (refcount 1, no
  // reference), which 'check' reports as a leak and repair reclaims. Pins
  // must be released before the image is destroyed. The offline metadata
  // calls below (update_refcount, rebuild_refcounts, snapshots) ignore pins.
  [[nodiscard]] bool maps_extents() const override { return true; }
  [[nodiscard]] std::optional<HostExtent> map_extent(uint64_t offset, uint64_t length,
                                                     bool write) override;

  // --- metadata access for skiff-img (info, map, check, snapshot, convert) ---
  [[nodiscard]] std::unique_lock<std::recursive_mutex> lock() { return std::unique_lock(mutex_); }
  // The current header (copy, includes extensions and backing name).
  [[nodiscard]] qcow2::Qcow2Header header() const;
  [[nodiscard]] uint64_t cluster_size() const { return cluster_size_; }
  [[nodiscard]] const std::string& path() const { return file_.path(); }
  // The opened backing image, or nullptr (none, or open_backing = false).
  [[nodiscard]] DiskImage* backing() const { return backing_.get(); }
  [[nodiscard]] Result<uint64_t> file_size() const;

  // Active L1 table entries (host-endian, flags included).
  [[nodiscard]] Result<std::vector<uint64_t>> l1_table();
  // An L2 table (any, e.g. a snapshot's) by its cluster-aligned host offset,
  // read through the cache. Fails if the offset is misaligned or past EOF.
  [[nodiscard]] Result<std::vector<uint64_t>> l2_table(uint64_t l2_offset);
  // Refcount table entries (host-endian).
  [[nodiscard]] Result<std::vector<uint64_t>> refcount_table();
  // Refcount of the host cluster containing `host_offset` (0 beyond the table).
  [[nodiscard]] Result<uint64_t> refcount(uint64_t host_offset);

  // Raw file access (snapshot table, snapshot L1 copies). Writes that modify
  // L1/L2/refcount structures behind the caches' back must be followed by
  // drop_caches(). Reads past EOF fail.
  [[nodiscard]] Result<std::vector<uint8_t>> read_host(uint64_t offset, uint64_t length);
  [[nodiscard]] Result<> write_host(uint64_t offset, std::span<const uint8_t> data);
  // Flushes, then forgets cached L2 tables and refcount blocks and re-reads
  // the L1 and refcount tables from the file.
  [[nodiscard]] Result<> drop_caches();

  // Allocates `count` contiguous free clusters (refcount 0 -> 1), reusing
  // free space from a hint; returns the host offset of the first. Nothing
  // points at them yet (leaked if the caller crashes before linking them).
  [[nodiscard]] Result<uint64_t> allocate_clusters(uint64_t count);
  // Adds `delta` to the refcount of every cluster overlapping
  // [host_offset, host_offset + length). A negative delta first writes all
  // dirty tables out (so no on-disk entry still points at a cluster whose
  // refcount drops). Fails on overflow/underflow, naming the cluster.
  [[nodiscard]] Result<> update_refcount(uint64_t host_offset, uint64_t length, int64_t delta);
  // Replaces the active L1 table (snapshot apply). The table is written to a
  // new location if it does not fit, synced, then the header is switched.
  // Refcounts are NOT changed; the caller adjusts them (and then calls
  // update_copied_flags()).
  [[nodiscard]] Result<> set_active_l1(std::span<const uint64_t> entries);
  // Recomputes QCOW_OFLAG_COPIED in the active L1 and its L2 tables from the
  // refcounts (spec: "bit 63 ... must be reconstructed from the refcount
  // table" after snapshot operations).
  [[nodiscard]] Result<> update_copied_flags();
  // Points the header at a new snapshot table (written and synced by the
  // caller); writes nb_snapshots + snapshots_offset and syncs.
  [[nodiscard]] Result<> set_snapshot_table(uint64_t offset, uint32_t count);
  // Rewrites the backing file name / format (skiff-img rebase -u / -b).
  [[nodiscard]] Result<> set_backing_file(const std::string& name, const std::string& format);
  // Grows the virtual size (grows the L1 table if needed). Shrinking is refused.
  [[nodiscard]] Result<> resize(uint64_t new_size);

  // Unallocates every cluster of the active image (qemu-img commit empties
  // the overlay this way): afterwards every range reads through to the
  // backing file (or as zeroes without one) and block_status reports nothing
  // allocated. The L1 entries are cleared and written first; only then do the
  // L2 tables and the clusters they reached lose the active image's
  // reference, so a crash in between merely leaks them. Internal snapshots
  // keep their data.
  [[nodiscard]] Result<> make_empty();

  // Writes one guest cluster compressed (convert -c). `data` is the cluster's
  // contents (the last cluster of the disk may be short; it is zero-padded).
  // Falls back to an uncompressed cluster if compression does not help.
  [[nodiscard]] Result<> write_compressed(uint64_t cluster_index, std::span<const uint8_t> data);

  // (L1 offset, L1 entry count) of every internal snapshot, from the
  // snapshot table (bounds-checked).
  struct SnapshotL1 {
    uint64_t l1_offset = 0;
    uint32_t l1_size = 0;
  };
  [[nodiscard]] Result<std::vector<SnapshotL1>> snapshot_l1_tables();

  // Rebuilds all refcounts from the L1/L2 tables of the active image and its
  // snapshots (repair; also done on writable open of a dirty image). Writes
  // a new refcount table and blocks after the end of the used area.
  [[nodiscard]] Result<> rebuild_refcounts();

 private:
  struct PendingFree {
    uint64_t host_offset;
    uint64_t length;
  };
  Qcow2Image() = default;
  [[nodiscard]] Result<> init(const OpenImageOptions& options);
  [[nodiscard]] Result<> open_backing(const OpenImageOptions& options);

  // Internal versions; the caller holds mutex_.
  [[nodiscard]] Result<> check_request(uint64_t offset, uint64_t length, bool writing) const;
  [[nodiscard]] Result<uint64_t> l2_offset_locked(uint64_t l1_index);
  [[nodiscard]] Result<uint64_t> get_l2_entry(uint64_t guest_cluster);
  [[nodiscard]] Result<> set_l2_entry(uint64_t guest_cluster, uint64_t entry);
  [[nodiscard]] Result<> make_l2_writable(uint64_t l1_index);
  // Host offset of a normal data cluster's L2 entry, checked (alignment,
  // not the header cluster).
  [[nodiscard]] Result<uint64_t> data_host_offset(uint64_t guest_cluster, uint64_t entry) const;
  // Bytes (at most `max`) from `in_cluster` of `guest_cluster`, a data
  // cluster at `host`, that following data clusters continue back to back in
  // the file (`owned`: and that are ours alone, for in-place writes).
  [[nodiscard]] Result<uint64_t> contiguous_bytes(uint64_t guest_cluster, uint64_t host,
                                                  uint64_t in_cluster, uint64_t max, bool owned);
  // Reads from `in_cluster` of `guest_cluster` into the start of `out`: the
  // rest of that cluster, or more for contiguous data clusters. Returns the
  // bytes read.
  [[nodiscard]] Result<size_t> read_run(uint64_t guest_cluster, uint64_t in_cluster,
                                        std::span<uint8_t> out);
  [[nodiscard]] Result<> read_backing(uint64_t offset, std::span<uint8_t> out);
  [[nodiscard]] Result<> read_compressed(uint64_t entry, std::span<uint8_t> cluster);
  [[nodiscard]] Result<> write_cluster_part(uint64_t guest_cluster, uint64_t in_cluster,
                                            std::span<const uint8_t> in);
  [[nodiscard]] Result<> zero_cluster(uint64_t guest_cluster, bool may_unmap, bool discard);
  [[nodiscard]] Result<uint64_t> refcount_locked(uint64_t cluster);
  [[nodiscard]] Result<> free_host_range(uint64_t host_offset, uint64_t length);
  [[nodiscard]] Result<> free_entry_clusters(uint64_t l2_entry);
  [[nodiscard]] Result<> process_pending_frees();
  // Host cluster ranges [first, end) pinned by in-flight extents, sorted and
  // merged; empty when nothing is pinned.
  struct ClusterRange {
    uint64_t first;
    uint64_t end;
  };
  [[nodiscard]] std::vector<ClusterRange> pinned_ranges_locked() const;
  // Whether `cluster` lies in one of the `sorted` ranges.
  [[nodiscard]] static bool covers(std::span<const ClusterRange> sorted, uint64_t cluster);
  void release_extent(uint32_t id) override;
  [[nodiscard]] Result<> flush_tables_locked();
  [[nodiscard]] Result<> write_l1_locked();
  [[nodiscard]] Result<> write_header_locked();
  [[nodiscard]] Result<> set_l1_locked(std::vector<uint64_t> entries);
  [[nodiscard]] Result<> update_copied_flags_locked();
  [[nodiscard]] Result<> rebuild_refcounts_locked();
  [[nodiscard]] Result<std::vector<SnapshotL1>> snapshot_l1_tables_locked();
  [[nodiscard]] Result<> preallocate(bool full);
  [[nodiscard]] Result<> check_host_range(uint64_t offset, uint64_t length, const char* what) const;
  friend Result<> qcow2::create(const std::string&, const qcow2::CreateOptions&);

  mutable std::recursive_mutex mutex_;
  HostFile file_;
  bool read_only_ = true;
  qcow2::Qcow2Header header_;
  uint32_t cluster_bits_ = 16;
  uint64_t cluster_size_ = 65536;
  uint64_t file_size_ = 0;  // grows as clusters are written
  std::vector<uint64_t> l1_;
  bool l1_dirty_ = false;
  // Set while flush_tables_locked() writes L2 tables after its data+refcount
  // sync, so the L2 write-back need not sync again per table.
  bool refcounts_synced_for_l2_ = false;
  std::unique_ptr<qcow2::TableCache> l2_cache_;
  std::unique_ptr<qcow2::RefcountTable> refcounts_;
  std::unique_ptr<DiskImage> backing_;
  std::vector<PendingFree> pending_frees_;
  // map_extent pins by id: the host clusters each covers (end 0: id unused).
  std::vector<ClusterRange> pins_;
  std::vector<uint32_t> free_pin_ids_;
  uint32_t pins_held_ = 0;
  // One entry per refcount decrement of a host cluster that was pinned when
  // it was due (see map_extent); applied when no pin covers it any more.
  std::vector<uint64_t> deferred_frees_;
  // Packing of compressed clusters: next free byte in the last cluster used
  // for compressed data (0 = none).
  uint64_t compressed_next_ = 0;
  // Last decompressed cluster (sequential reads of compressed images).
  uint64_t decompressed_entry_ = 0;
  std::vector<uint8_t> decompressed_;
};

}  // namespace skiff

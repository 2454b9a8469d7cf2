// Qcow2Image: opening (header validation, feature bits, backing chain) and the
// read side (L1 -> L2 -> data / compressed / backing / zeroes), block_status
// and flush. Writes are in qcow2_write.cc, the metadata API for skiff-img in
// qcow2_metadata.cc.
#include "block/qcow2/qcow2_image.h"

#include <climits>
#include <cstdlib>

#include <algorithm>

#include "base/log.h"
#include "block/qcow2/compress.h"
#include "block/qcow2/format.h"
#include "block/qcow2/refcount.h"
#include "block/qcow2/table_cache.h"

namespace skiff {

using namespace qcow2;

Result<std::unique_ptr<Qcow2Image>> Qcow2Image::open(const std::string& path,
                                                     const OpenImageOptions& options) {
  std::unique_ptr<Qcow2Image> img(new Qcow2Image());
  img->file_ = SKIFF_TRY(HostFile::open(path, options.read_only));
  img->read_only_ = options.read_only;
  if (auto r = img->init(options); !r) return context(r.error(), fmt::format("'{}'", path));
  return img;
}

Qcow2Image::~Qcow2Image() {
  if (pins_held_ > 0)
    LOG_ERROR("qcow2 '{}': closed with {} mapped extents still in flight", file_.path(),
              pins_held_);
  if (read_only_ || !refcounts_) return;
  std::lock_guard g(mutex_);
  if (auto r = flush_tables_locked(); !r)
    LOG_ERROR("qcow2 '{}': flushing metadata on close failed: {}", file_.path(), r.error().what());
}

namespace {

std::string incompatible_bit_name(const Qcow2Header& h, unsigned bit) {
  std::string n = h.feature_name(0, static_cast<uint8_t>(bit));
  if (!n.empty()) return n;
  switch (bit) {
    case 2:
      return "external data file";
    case 4:
      return "extended L2 entries";
    default:
      return "unknown";
  }
}

}  // namespace

Result<> Qcow2Image::init(const OpenImageOptions& options) {
  file_size_ = SKIFF_TRY(file_.size());
  std::vector<uint8_t> first(
      static_cast<size_t>(std::min<uint64_t>(file_size_, 1ull << kMaxClusterBits)));
  SKIFF_TRY_VOID(file_.pread(0, first));
  header_ = SKIFF_TRY(parse_header(first, file_size_));

  const uint64_t unsupported = header_.incompatible_features & ~kIncompatSupported;
  if (unsupported) {
    const unsigned bit = static_cast<unsigned>(std::countr_zero(unsupported));
    return fail(
        "unsupported incompatible feature bit {} ('{}') in incompatible_features; this "
        "image needs a newer implementation",
        bit, incompatible_bit_name(header_, bit));
  }
  if (header_.crypt_method != kCryptNone)
    return fail("encrypted images are not supported (crypt_method {})", header_.crypt_method);
  if ((header_.incompatible_features & kIncompatCorrupt) && !read_only_)
    return fail(
        "image is marked corrupt (incompatible feature bit 1); open it read-only, or "
        "repair it with 'skiff-img check -r all'");

  cluster_bits_ = header_.cluster_bits;
  cluster_size_ = header_.cluster_size();

  std::vector<uint8_t> raw(static_cast<size_t>(header_.l1_size) * 8);
  SKIFF_TRY_VOID(file_.pread(header_.l1_table_offset, raw));
  l1_.resize(header_.l1_size);
  for (size_t i = 0; i < l1_.size(); ++i) l1_[i] = load_be64(&raw[i * 8]);

  refcounts_ = std::make_unique<RefcountTable>(
      file_, file_size_, cluster_bits_, header_.refcount_order, options.refcount_cache_bytes);
  SKIFF_TRY_VOID(refcounts_->load(header_.refcount_table_offset, header_.refcount_table_clusters));

  l2_cache_ = std::make_unique<TableCache>(
      static_cast<size_t>(cluster_size_), options.l2_cache_bytes,
      [this](uint64_t off, std::span<uint8_t> out) { return file_.pread(off, out); },
      [this](uint64_t off, std::span<const uint8_t> in) -> Result<> {
        // An L2 table may point at clusters allocated since the last flush:
        // their data and refcounts must be stable first.
        if (!refcounts_synced_for_l2_) {
          if (refcounts_->dirty()) SKIFF_TRY_VOID(refcounts_->flush());
          SKIFF_TRY_VOID(file_.sync());
        }
        SKIFF_TRY_VOID(file_.pwrite(off, in));
        file_size_ = std::max(file_size_, off + in.size());
        return {};
      });

  if (header_.has_backing() && options.open_backing) SKIFF_TRY_VOID(open_backing(options));

  if (!read_only_) {
    if (header_.incompatible_features & kIncompatDirty) {
      // Spec: "make sure to scan L1/L2 tables to repair refcounts before
      // accessing the image" (lazy refcounts left them stale).
      LOG_INFO("qcow2 '{}': dirty bit set, rebuilding refcounts", file_.path());
      SKIFF_TRY_VOID(rebuild_refcounts_locked());
      header_.incompatible_features &= ~kIncompatDirty;
      SKIFF_TRY_VOID(write_header_locked());
    }
    if (header_.autoclear_features != 0) {
      // Spec: writing requires clearing auto-clear bits we do not maintain
      // (bitmaps become inconsistent as soon as we write).
      header_.autoclear_features = 0;
      SKIFF_TRY_VOID(write_header_locked());
    }
  }
  return {};
}

Result<> Qcow2Image::open_backing(const OpenImageOptions& options) {
  std::string name = header_.backing_file;
  if (name.empty()) return {};
  if (name.find(':') != std::string::npos && name.find('/') == std::string::npos &&
      name.rfind("json:", 0) == 0)
    return fail("backing file '{}' uses a protocol prefix, which is not supported", name);
  if (name[0] != '/') {
    const std::string& p = file_.path();
    const auto slash = p.rfind('/');
    name = (slash == std::string::npos ? std::string(".") : p.substr(0, slash)) + "/" + name;
  }
  char buf[PATH_MAX];
  if (!::realpath(name.c_str(), buf))
    return fail_errno("cannot open backing file '{}' (from header field backing_file)", name);
  const std::string real = buf;
  std::vector<std::string> chain = options.chain;
  if (::realpath(file_.path().c_str(), buf)) chain.emplace_back(buf);
  if (std::find(chain.begin(), chain.end(), real) != chain.end())
    return fail("backing file loop: '{}' is already in this image's backing chain", real);
  OpenImageOptions bo = options;
  bo.read_only = true;
  bo.format = header_.backing_format.value_or("");
  bo.chain = std::move(chain);
  auto b = open_image(name, bo);
  if (!b) return context(b.error(), fmt::format("opening backing file '{}'", name));
  backing_ = std::move(*b);
  return {};
}

uint64_t Qcow2Image::size() const {
  std::lock_guard g(mutex_);
  return header_.size;
}

Result<> Qcow2Image::check_request(uint64_t offset, uint64_t length, bool writing) const {
  if (offset > header_.size || length > header_.size - offset)
    return fail("request {}+{} is beyond the end of qcow2 image '{}' ({} bytes)", offset, length,
                file_.path(), header_.size);
  if (writing && read_only_) return fail("qcow2 image '{}' is open read-only", file_.path());
  return {};
}

Result<> Qcow2Image::check_host_range(uint64_t offset, uint64_t length, const char* what) const {
  if (offset > file_size_ || length > file_size_ - offset)
    return fail("{} at host offset {:#x} (+{}) is past the end of the file ({} bytes)", what,
                offset, length, file_size_);
  return {};
}

Result<uint64_t> Qcow2Image::l2_offset_locked(uint64_t l1_index) {
  if (l1_index >= l1_.size())
    return fail("guest offset maps to L1 index {} beyond l1_size {}", l1_index, l1_.size());
  const uint64_t off = l1_[l1_index] & kL1OffsetMask;
  if (off == 0) return 0;
  if (off % cluster_size_ != 0)
    return fail("L1 entry {} points at misaligned L2 table offset {:#x}", l1_index, off);
  if (off < cluster_size_) return fail("L1 entry {} points at the header cluster", l1_index);
  // Tables allocated this session may still live only in the cache.
  const uint64_t end = std::max(file_size_, refcounts_->end_cluster() << cluster_bits_);
  if (off > end || cluster_size_ > end - off)
    return fail("L1 entry {} points at L2 table {:#x}, past the end of the file ({} bytes)",
                l1_index, off, file_size_);
  return off;
}

Result<uint64_t> Qcow2Image::get_l2_entry(uint64_t guest_cluster) {
  const uint64_t l2_bits = cluster_bits_ - 3;
  const uint64_t l2_off = SKIFF_TRY(l2_offset_locked(guest_cluster >> l2_bits));
  if (l2_off == 0) return 0;
  const uint8_t* t = SKIFF_TRY(l2_cache_->get(l2_off));
  uint64_t e = load_be64(t + (guest_cluster & ((1ull << l2_bits) - 1)) * 8);
  // Version 2 has no zero flag; bit 0 is reserved there.
  if (header_.version < 3 && !(e & kOflagCompressed)) e &= ~kOflagZero;
  return e;
}

Result<> Qcow2Image::read_backing(uint64_t offset, std::span<uint8_t> out) {
  uint64_t n = 0;
  if (backing_) {
    const uint64_t bsize = backing_->size();
    if (offset < bsize) {
      n = std::min<uint64_t>(out.size(), bsize - offset);
      SKIFF_TRY_VOID(backing_->read(offset, out.first(n)));
    }
  }
  std::fill(out.begin() + static_cast<ptrdiff_t>(n), out.end(), uint8_t{0});
  return {};
}

Result<> Qcow2Image::read_compressed(uint64_t entry, std::span<uint8_t> cluster) {
  const CompressedDescriptor d = decode_compressed(entry, cluster_bits_);
  if (d.host_offset < cluster_size_ || d.host_offset >= file_size_)
    return fail(
        "compressed cluster descriptor {:#x} points at host offset {:#x} outside the data "
        "area (file is {} bytes)",
        entry, d.host_offset, file_size_);
  std::vector<uint8_t> in(static_cast<size_t>(std::min(d.max_bytes, file_size_ - d.host_offset)));
  SKIFF_TRY_VOID(file_.pread(d.host_offset, in));
  auto r = decompress_cluster(header_.compression_type, in, cluster);
  if (!r) return context(r.error(), fmt::format("cluster at host offset {:#x}", d.host_offset));
  return {};
}

Result<uint64_t> Qcow2Image::data_host_offset(uint64_t gc, uint64_t entry) const {
  const uint64_t host = entry & kL2OffsetMask;
  if (host % cluster_size_ != 0)
    return fail("L2 entry for guest cluster {} has misaligned host offset {:#x}", gc, host);
  if (host < cluster_size_)
    return fail("L2 entry for guest cluster {} points at the header cluster", gc);
  return host;
}

// QEMU merges requests over clusters that are contiguous in the file the same
// way; on an allocated image this makes a 1 MiB request one pread/pwrite
// instead of one per cluster.
Result<uint64_t> Qcow2Image::contiguous_bytes(uint64_t gc, uint64_t host, uint64_t in_cluster,
                                              uint64_t max, bool owned) {
  const uint64_t l2_mask = (1ull << (cluster_bits_ - 3)) - 1;
  uint64_t len = std::min(cluster_size_ - in_cluster, max);
  for (uint64_t k = 1; len < max; ++k) {
    const uint64_t next = gc + k;
    // In-place writes need every table on the way to be ours alone as well.
    if (owned && (next & l2_mask) == 0 && !(l1_[next >> (cluster_bits_ - 3)] & kOflagCopied)) break;
    const uint64_t e = SKIFF_TRY(get_l2_entry(next));
    if (classify_l2(e) != ClusterType::kNormal || (e & kL2OffsetMask) != host + k * cluster_size_)
      break;
    if (owned && !(e & kOflagCopied)) break;
    len += std::min(cluster_size_, max - len);
  }
  return len;
}

Result<size_t> Qcow2Image::read_run(uint64_t gc, uint64_t in_cluster, std::span<uint8_t> out) {
  const uint64_t entry = SKIFF_TRY(get_l2_entry(gc));
  size_t n = static_cast<size_t>(std::min<uint64_t>(cluster_size_ - in_cluster, out.size()));
  switch (classify_l2(entry)) {
    case ClusterType::kUnallocated:
      SKIFF_TRY_VOID(read_backing(gc * cluster_size_ + in_cluster, out.first(n)));
      return n;
    case ClusterType::kZeroPlain:
    case ClusterType::kZeroAllocated:
      std::fill_n(out.begin(), n, uint8_t{0});
      return n;
    case ClusterType::kNormal: {
      const uint64_t host = SKIFF_TRY(data_host_offset(gc, entry));
      n = static_cast<size_t>(SKIFF_TRY(contiguous_bytes(gc, host, in_cluster, out.size(), false)));
      SKIFF_TRY_VOID(check_host_range(host + in_cluster, n, "L2 entry's data cluster"));
      SKIFF_TRY_VOID(file_.pread(host + in_cluster, out.first(n)));
      return n;
    }
    case ClusterType::kCompressed:
      if (decompressed_.size() != cluster_size_ || decompressed_entry_ != entry) {
        decompressed_.resize(cluster_size_);
        decompressed_entry_ = 0;
        SKIFF_TRY_VOID(read_compressed(entry, decompressed_));
        decompressed_entry_ = entry;
      }
      std::copy_n(decompressed_.begin() + static_cast<ptrdiff_t>(in_cluster), n, out.begin());
      return n;
  }
  return fail("internal error: unclassified L2 entry {:#x}", entry);
}

std::optional<HostExtent> Qcow2Image::map_extent(uint64_t offset, uint64_t length, bool write) {
  std::lock_guard g(mutex_);
  if (length == 0 || !check_request(offset, length, write)) return std::nullopt;
  const uint64_t gc = offset >> cluster_bits_;
  const uint64_t inc = offset & (cluster_size_ - 1);
  const uint64_t l1_index = gc >> (cluster_bits_ - 3);
  if (l1_index >= l1_.size()) return std::nullopt;
  if (write && !(l1_[l1_index] & kOflagCopied)) return std::nullopt;
  auto entry = get_l2_entry(gc);
  if (!entry || classify_l2(*entry) != ClusterType::kNormal) return std::nullopt;
  if (write && !(*entry & kOflagCopied)) return std::nullopt;
  auto host = data_host_offset(gc, *entry);
  if (!host) return std::nullopt;
  auto run = contiguous_bytes(gc, *host, inc, length, write);
  if (!run || *run < length) return std::nullopt;
  if (!check_host_range(*host + inc, length, "L2 entry's data cluster")) return std::nullopt;
  // Pin the host clusters until the engine is done (see the header).
  uint32_t id;
  if (!free_pin_ids_.empty()) {
    id = free_pin_ids_.back();
    free_pin_ids_.pop_back();
  } else {
    id = static_cast<uint32_t>(pins_.size());
    pins_.emplace_back();
  }
  pins_[id] = {(*host + inc) >> cluster_bits_, ((*host + inc + length - 1) >> cluster_bits_) + 1};
  ++pins_held_;
  return HostExtent{file_.fd(), *host + inc, ExtentPin(this, id)};
}

Result<> Qcow2Image::read(uint64_t offset, std::span<uint8_t> out) {
  std::lock_guard g(mutex_);
  SKIFF_TRY_VOID(check_request(offset, out.size(), false));
  while (!out.empty()) {
    const size_t n =
        SKIFF_TRY(read_run(offset >> cluster_bits_, offset & (cluster_size_ - 1), out));
    offset += n;
    out = out.subspan(n);
  }
  return {};
}

Result<ExtentStatus> Qcow2Image::block_status(uint64_t offset, uint64_t length) {
  std::lock_guard g(mutex_);
  SKIFF_TRY_VOID(check_request(offset, length, false));
  if (length == 0) return ExtentStatus{};
  const uint64_t end = offset + length;
  const uint64_t gc0 = offset >> cluster_bits_;
  const uint64_t e0 = SKIFF_TRY(get_l2_entry(gc0));
  const ClusterType t0 = classify_l2(e0);
  const uint64_t host0 = e0 & kL2OffsetMask;
  uint64_t pos = std::min(end, (gc0 + 1) << cluster_bits_);
  while (pos < end) {
    const uint64_t gc = pos >> cluster_bits_;
    const uint64_t e = SKIFF_TRY(get_l2_entry(gc));
    const ClusterType t = classify_l2(e);
    if (t != t0) break;
    if ((t == ClusterType::kNormal || t == ClusterType::kZeroAllocated) &&
        (e & kL2OffsetMask) != host0 + (gc - gc0) * cluster_size_)
      break;
    pos = std::min(end, (gc + 1) << cluster_bits_);
  }
  ExtentStatus s;
  s.length = pos - offset;
  const uint64_t in = offset & (cluster_size_ - 1);
  switch (t0) {
    case ClusterType::kUnallocated:
      if (backing_ && offset < backing_->size()) {
        const uint64_t n = std::min(s.length, backing_->size() - offset);
        ExtentStatus b = SKIFF_TRY(backing_->block_status(offset, n));
        b.depth += 1;
        b.allocated = false;
        return b;
      }
      s.zero = true;
      break;
    case ClusterType::kZeroPlain:
      s.allocated = s.zero = true;
      break;
    case ClusterType::kZeroAllocated:
      s.allocated = s.zero = true;
      s.host_offset = host0 + in;
      break;
    case ClusterType::kNormal:
      s.allocated = s.data = true;
      s.host_offset = host0 + in;
      break;
    case ClusterType::kCompressed:
      s.allocated = s.data = s.compressed = true;
      break;
  }
  return s;
}

Result<> Qcow2Image::write_l1_locked() {
  std::vector<uint8_t> raw(l1_.size() * 8);
  for (size_t i = 0; i < l1_.size(); ++i) store_be64(&raw[i * 8], l1_[i]);
  SKIFF_TRY_VOID(file_.pwrite(header_.l1_table_offset, raw));
  l1_dirty_ = false;
  return {};
}

// Write-back order (spec "Host cluster management": a refcount may exceed the
// number of references but never be lower; QEMU orders its caches the same
// way, qcow2_cache_set_dependency):
//   1. guest data (already pwritten) and refcount blocks, then fdatasync:
//      every cluster is accounted for before anything points at it;
//   2. L2 tables, fdatasync: they may point at the clusters from step 1;
//   3. the L1 table, fdatasync: it may point at L2 tables from step 2.
// Decrements never sit in the refcount cache ahead of this: they are applied
// only after the entries that referenced the cluster were flushed
// (process_pending_frees), so a crash can only leak clusters.
Result<> Qcow2Image::flush_tables_locked() {
  if (read_only_) return {};
  if (refcounts_->dirty()) SKIFF_TRY_VOID(refcounts_->flush());
  SKIFF_TRY_VOID(file_.sync());
  if (l2_cache_->has_dirty()) {
    refcounts_synced_for_l2_ = true;
    auto r = l2_cache_->flush();
    refcounts_synced_for_l2_ = false;
    SKIFF_TRY_VOID(r);
    SKIFF_TRY_VOID(file_.sync());
  }
  if (l1_dirty_) {
    SKIFF_TRY_VOID(write_l1_locked());
    SKIFF_TRY_VOID(file_.sync());
  }
  return {};
}

Result<> Qcow2Image::flush() {
  std::lock_guard g(mutex_);
  return flush_tables_locked();
}

}  // namespace skiff

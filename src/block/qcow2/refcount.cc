// Refcount table and blocks (spec: "Host cluster management"). See
// refcount.h for the write ordering this file maintains.
#include "block/qcow2/refcount.h"

#include <algorithm>

#include "block/qcow2/format.h"

namespace skiff::qcow2 {

namespace {
uint64_t div_round_up(uint64_t a, uint64_t b) {
  return a / b + (a % b ? 1 : 0);
}
}  // namespace

RefcountTable::RefcountTable(HostFile& file, uint64_t& file_size, uint32_t cluster_bits,
                             uint32_t refcount_order, size_t cache_bytes)
    : file_(file),
      file_size_(file_size),
      cluster_bits_(cluster_bits),
      cluster_size_(1ull << cluster_bits),
      order_(refcount_order),
      block_entries_((1ull << cluster_bits) * 8 >> refcount_order),
      cache_(
          static_cast<size_t>(1ull << cluster_bits), cache_bytes,
          [this](uint64_t off, std::span<uint8_t> out) { return file_.pread(off, out); },
          [this](uint64_t off, std::span<const uint8_t> in) -> Result<> {
            SKIFF_TRY_VOID(file_.pwrite(off, in));
            file_size_ = std::max(file_size_, off + in.size());
            return {};
          }) {}

Result<> RefcountTable::load(uint64_t table_offset, uint32_t table_clusters) {
  std::vector<uint8_t> raw(static_cast<size_t>(table_clusters * cluster_size_));
  SKIFF_TRY_VOID(file_.pread(table_offset, raw));
  table_.resize(raw.size() / 8);
  for (size_t i = 0; i < table_.size(); ++i) table_[i] = load_be64(&raw[i * 8]);
  table_offset_ = table_offset;
  table_clusters_ = table_clusters;
  cache_.clear();
  free_hint_ = 0;
  alloc_end_ = div_round_up(file_size_, cluster_size_);
  return {};
}

uint64_t RefcountTable::end_cluster() const {
  return std::max(alloc_end_, div_round_up(file_size_, cluster_size_));
}

Result<uint64_t> RefcountTable::block_offset(uint64_t ti) const {
  if (ti >= table_.size()) return 0;
  const uint64_t off = table_[ti] & kRefTableOffsetMask;
  if (off == 0) return 0;
  if (off % cluster_size_ != 0)
    return fail("refcount table entry {} points at misaligned refcount block {:#x}", ti, off);
  if (off < cluster_size_) return fail("refcount table entry {} points at the header cluster", ti);
  if (off > file_size_ || cluster_size_ > file_size_ - off)
    return fail("refcount table entry {} points at {:#x}, past the end of the file ({} bytes)", ti,
                off, file_size_);
  return off;
}

Result<uint64_t> RefcountTable::get(uint64_t cluster) {
  const uint64_t off = SKIFF_TRY(block_offset(cluster / block_entries_));
  if (off == 0) return 0;
  uint8_t* blk = SKIFF_TRY(cache_.get(off));
  return refcount_get(std::span(blk, cluster_size_), order_, cluster % block_entries_);
}

Result<> RefcountTable::set_in_existing_block(uint64_t cluster, uint64_t value) {
  const uint64_t off = SKIFF_TRY(block_offset(cluster / block_entries_));
  if (off == 0) return fail("internal error: no refcount block for cluster {}", cluster);
  uint8_t* blk = SKIFF_TRY(cache_.get(off));
  refcount_set(std::span(blk, cluster_size_), order_, cluster % block_entries_, value);
  cache_.mark_dirty(off);
  return {};
}

Result<> RefcountTable::add(uint64_t cluster, int64_t delta) {
  const uint64_t cur = SKIFF_TRY(get(cluster));
  uint64_t next;
  if (delta < 0) {
    const uint64_t d = static_cast<uint64_t>(-delta);
    if (cur < d)
      return fail("refcount of host cluster {} would drop below zero ({} - {})", cluster, cur, d);
    next = cur - d;
  } else {
    const uint64_t d = static_cast<uint64_t>(delta);
    if (refcount_max(order_) - cur < d)
      return fail("refcount of host cluster {} would overflow ({} + {} > {}, refcount_bits {})",
                  cluster, cur, d, refcount_max(order_), 1u << order_);
    next = cur + d;
  }
  if (next == cur) return {};
  const uint64_t ti = cluster / block_entries_;
  while (SKIFF_TRY(block_offset(ti)) == 0) {
    if (next == 0) return {};
    (void)SKIFF_TRY(ensure_block(ti));
  }
  SKIFF_TRY_VOID(set_in_existing_block(cluster, next));
  if (next == 0 && cluster < free_hint_) free_hint_ = cluster;
  if (next > 0) alloc_end_ = std::max(alloc_end_, cluster + 1);
  return {};
}

Result<uint64_t> RefcountTable::find_free(uint64_t count) {
  uint64_t c = std::max<uint64_t>(free_hint_, 1);  // cluster 0 is the header
  uint64_t run_start = c, run = 0;
  uint64_t first_free = UINT64_MAX;
  for (;;) {
    const uint64_t ti = c / block_entries_;
    const uint64_t off = SKIFF_TRY(block_offset(ti));
    const uint64_t block_end = (ti + 1) * block_entries_;
    if (off == 0) {
      // No block: every cluster it would describe is free.
      if (first_free == UINT64_MAX) first_free = c;
      run += block_end - c;
      c = block_end;
      if (run >= count) break;
      continue;
    }
    uint8_t* blk = SKIFF_TRY(cache_.get(off));
    std::span<const uint8_t> b(blk, cluster_size_);
    for (; c < block_end; ++c) {
      if (refcount_get(b, order_, c % block_entries_) == 0) {
        if (first_free == UINT64_MAX) first_free = c;
        if (++run >= count) break;
      } else {
        run = 0;
        run_start = c + 1;
      }
    }
    if (run >= count) break;
  }
  free_hint_ = first_free == run_start ? run_start + count : first_free;
  return run_start;
}

Result<> RefcountTable::write_table_entry(uint64_t ti) {
  uint8_t buf[8];
  store_be64(buf, table_[ti]);
  SKIFF_TRY_VOID(file_.pwrite(table_offset_ + ti * 8, buf));
  return {};
}

Result<bool> RefcountTable::ensure_block(uint64_t ti) {
  if (SKIFF_TRY(block_offset(ti)) != 0) return false;
  if (ti >= table_.size()) {
    SKIFF_TRY_VOID(grow_table(ti + 1));
    return true;
  }
  const uint64_t b = SKIFF_TRY(find_free(1));
  const uint64_t bti = b / block_entries_;
  if (bti >= table_.size()) {
    SKIFF_TRY_VOID(grow_table(bti + 1));
    return true;
  }
  if (SKIFF_TRY(block_offset(bti)) == 0) {
    // The free cluster is in a range without a block: make it that range's
    // block, describing itself (bti may differ from ti; the caller retries).
    uint8_t* blk = SKIFF_TRY(cache_.create(b * cluster_size_));
    refcount_set(std::span(blk, cluster_size_), order_, b % block_entries_, 1);
    SKIFF_TRY_VOID(cache_.flush());
    SKIFF_TRY_VOID(file_.sync());  // block contents before the table points at it
    table_[bti] = b * cluster_size_;
    SKIFF_TRY_VOID(write_table_entry(bti));
  } else {
    // Account for the new block in its existing block first, then write the
    // empty block, then point the table at it.
    SKIFF_TRY_VOID(set_in_existing_block(b, 1));
    (void)SKIFF_TRY(cache_.create(b * cluster_size_));
    SKIFF_TRY_VOID(cache_.flush());
    SKIFF_TRY_VOID(file_.sync());
    table_[ti] = b * cluster_size_;
    SKIFF_TRY_VOID(write_table_entry(ti));
  }
  alloc_end_ = std::max(alloc_end_, b + 1);
  return true;
}

Result<uint64_t> RefcountTable::allocate(uint64_t count) {
  if (count == 0) return fail("internal error: allocating 0 clusters");
  for (;;) {
    const uint64_t c = SKIFF_TRY(find_free(count));
    bool changed = false;
    for (uint64_t ti = c / block_entries_; ti <= (c + count - 1) / block_entries_; ++ti) {
      if (SKIFF_TRY(ensure_block(ti))) {
        changed = true;
        break;
      }
    }
    if (changed) {
      free_hint_ = 0;  // blocks landed somewhere; rescan (cheap: cached)
      continue;
    }
    // ensure_block may have used clusters; re-check the range is still free.
    bool still_free = true;
    for (uint64_t i = c; i < c + count && still_free; ++i) still_free = SKIFF_TRY(get(i)) == 0;
    if (!still_free) continue;
    for (uint64_t i = c; i < c + count; ++i) SKIFF_TRY_VOID(set_in_existing_block(i, 1));
    alloc_end_ = std::max(alloc_end_, c + count);
    return c * cluster_size_;
  }
}

Result<> RefcountTable::flush() {
  return cache_.flush();
}

Result<> RefcountTable::switch_header(uint64_t offset, uint32_t clusters) {
  uint8_t buf[12];
  store_be64(buf, offset);
  store_be32(buf + 8, clusters);
  SKIFF_TRY_VOID(file_.pwrite(kOffRefcountTableOffset, buf));
  return file_.sync();
}

Result<> RefcountTable::grow_table(uint64_t min_entries) {
  // Everything at or after `start` is free: new blocks and the new table go
  // there and describe themselves (QEMU does the same in alloc_refcount_block).
  SKIFF_TRY_VOID(cache_.flush());
  uint64_t start = end_cluster();
  uint64_t entries = std::max<uint64_t>(min_entries, table_.size() * 2);
  uint64_t tc = 0, end = 0;
  std::vector<uint64_t> missing;
  for (;;) {
    tc = div_round_up(entries * 8, cluster_size_);
    uint64_t nb = 0;
    for (;;) {
      end = start + nb + tc;
      missing.clear();
      for (uint64_t ti = start / block_entries_; ti <= (end - 1) / block_entries_; ++ti)
        if (ti >= table_.size() || table_[ti] == 0) missing.push_back(ti);
      if (missing.size() == nb) break;
      nb = missing.size();
    }
    if ((end - 1) / block_entries_ < entries) break;
    entries = (end - 1) / block_entries_ + 1 + entries / 2;
  }
  if (tc * cluster_size_ > kMaxRefcountTableBytes)
    return fail("refcount table would grow beyond {} bytes; image too large for cluster size {}",
                kMaxRefcountTableBytes, cluster_size_);
  std::vector<uint64_t> table(tc * cluster_size_ / 8, 0);
  std::copy(table_.begin(), table_.end(), table.begin());
  const uint64_t table_start = start + missing.size();
  // New blocks.
  for (size_t i = 0; i < missing.size(); ++i) {
    const uint64_t ti = missing[i];
    const uint64_t at = start + i;
    std::vector<uint8_t> blk(cluster_size_, 0);
    for (uint64_t x = std::max(start, ti * block_entries_);
         x < std::min(end, (ti + 1) * block_entries_); ++x)
      refcount_set(blk, order_, x % block_entries_, 1);
    SKIFF_TRY_VOID(file_.pwrite(at * cluster_size_, blk));
    table[ti] = at * cluster_size_;
  }
  // Clusters of the new area that fall into existing blocks.
  for (uint64_t x = start; x < end; ++x) {
    const uint64_t ti = x / block_entries_;
    if (ti < table_.size() && table_[ti] != 0) SKIFF_TRY_VOID(set_in_existing_block(x, 1));
  }
  SKIFF_TRY_VOID(cache_.flush());
  std::vector<uint8_t> raw(table.size() * 8);
  for (size_t i = 0; i < table.size(); ++i) store_be64(&raw[i * 8], table[i]);
  SKIFF_TRY_VOID(file_.pwrite(table_start * cluster_size_, raw));
  file_size_ = std::max(file_size_, end * cluster_size_);
  SKIFF_TRY_VOID(file_.sync());
  SKIFF_TRY_VOID(switch_header(table_start * cluster_size_, static_cast<uint32_t>(tc)));
  const uint64_t old_offset = table_offset_;
  const uint64_t old_clusters = table_clusters_;
  table_ = std::move(table);
  table_offset_ = table_start * cluster_size_;
  table_clusters_ = static_cast<uint32_t>(tc);
  alloc_end_ = std::max(alloc_end_, end);
  // The old table is unreferenced now; freeing it can only leak on a crash.
  for (uint64_t i = 0; i < old_clusters; ++i)
    SKIFF_TRY_VOID(add(old_offset / cluster_size_ + i, -1));
  return {};
}

Result<> RefcountTable::rebuild(std::vector<uint64_t> counts) {
  SKIFF_TRY_VOID(cache_.flush());
  const uint64_t start = std::max<uint64_t>(counts.size(), div_round_up(file_size_, cluster_size_));
  uint64_t nb = 1, tc = 1, end = 0;
  for (;;) {
    end = start + nb + tc;
    const uint64_t nb2 = div_round_up(end, block_entries_);
    const uint64_t tc2 = div_round_up(nb2 * 8, cluster_size_);
    if (nb2 == nb && tc2 == tc) break;
    nb = nb2;
    tc = tc2;
  }
  if (tc * cluster_size_ > kMaxRefcountTableBytes)
    return fail("rebuilt refcount table would exceed {} bytes", kMaxRefcountTableBytes);
  const uint64_t max = refcount_max(order_);
  std::vector<uint64_t> table(tc * cluster_size_ / 8, 0);
  std::vector<uint8_t> blk(cluster_size_);
  for (uint64_t ti = 0; ti < nb; ++ti) {
    std::fill(blk.begin(), blk.end(), uint8_t{0});
    for (uint64_t x = ti * block_entries_; x < std::min(end, (ti + 1) * block_entries_); ++x) {
      uint64_t v = x < counts.size() ? counts[x] : (x >= start ? 1 : 0);
      if (v > max)
        return fail("host cluster {} is referenced {} times, more than refcount_bits {} can hold",
                    x, v, 1u << order_);
      refcount_set(blk, order_, x % block_entries_, v);
    }
    SKIFF_TRY_VOID(file_.pwrite((start + ti) * cluster_size_, blk));
    table[ti] = (start + ti) * cluster_size_;
  }
  std::vector<uint8_t> raw(table.size() * 8);
  for (size_t i = 0; i < table.size(); ++i) store_be64(&raw[i * 8], table[i]);
  SKIFF_TRY_VOID(file_.pwrite((start + nb) * cluster_size_, raw));
  file_size_ = std::max(file_size_, end * cluster_size_);
  SKIFF_TRY_VOID(file_.sync());
  SKIFF_TRY_VOID(switch_header((start + nb) * cluster_size_, static_cast<uint32_t>(tc)));
  table_ = std::move(table);
  table_offset_ = (start + nb) * cluster_size_;
  table_clusters_ = static_cast<uint32_t>(tc);
  cache_.clear();
  free_hint_ = 0;
  alloc_end_ = end;
  return {};
}

}  // namespace skiff::qcow2

// TableCache: a bounded LRU cache of cluster-sized metadata tables (L2 tables,
// refcount blocks), write-back. Tables are kept as raw on-disk bytes; callers
// decode entries with the helpers in format.h. A pointer returned by get()
// stays valid until the next get()/create() on the same cache (which may
// evict the least recently used table, writing it back first).
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

#include "base/result.h"

namespace skiff::qcow2 {

class TableCache {
 public:
  using Reader = std::function<Result<>(uint64_t offset, std::span<uint8_t> out)>;
  using Writer = std::function<Result<>(uint64_t offset, std::span<const uint8_t> in)>;

  // capacity_bytes is rounded to whole tables, at least 4.
  TableCache(size_t table_bytes, size_t capacity_bytes, Reader reader, Writer writer);

  // The table at `offset`, read from the file on a miss.
  [[nodiscard]] Result<uint8_t*> get(uint64_t offset);
  // A new all-zero table at `offset` (just allocated; not read), marked dirty.
  [[nodiscard]] Result<uint8_t*> create(uint64_t offset);
  void mark_dirty(uint64_t offset);
  // Writes every dirty table (ascending offsets). No fdatasync.
  [[nodiscard]] Result<> flush();
  [[nodiscard]] bool has_dirty() const { return dirty_count_ > 0; }
  // Forgets every table (call after flush()).
  void clear();
  [[nodiscard]] size_t table_bytes() const { return table_bytes_; }
  [[nodiscard]] size_t capacity() const { return capacity_; }

 private:
  struct Entry {
    uint64_t offset;
    bool dirty;
    std::vector<uint8_t> data;
  };
  [[nodiscard]] Result<> make_room();
  [[nodiscard]] Entry& touch(std::list<Entry>::iterator it);

  size_t table_bytes_;
  size_t capacity_;
  Reader reader_;
  Writer writer_;
  std::list<Entry> lru_;  // front = most recently used
  std::unordered_map<uint64_t, std::list<Entry>::iterator> index_;
  size_t dirty_count_ = 0;
};

}  // namespace skiff::qcow2

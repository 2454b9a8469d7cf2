#include "block/qcow2/table_cache.h"

#include <algorithm>

namespace skiff::qcow2 {

TableCache::TableCache(size_t table_bytes, size_t capacity_bytes, Reader reader, Writer writer)
    : table_bytes_(table_bytes),
      capacity_(std::max<size_t>(4, capacity_bytes / table_bytes)),
      reader_(std::move(reader)),
      writer_(std::move(writer)) {}

TableCache::Entry& TableCache::touch(std::list<Entry>::iterator it) {
  if (it != lru_.begin()) lru_.splice(lru_.begin(), lru_, it);
  return lru_.front();
}

Result<> TableCache::make_room() {
  while (lru_.size() >= capacity_) {
    Entry& victim = lru_.back();
    if (victim.dirty) {
      SKIFF_TRY_VOID(writer_(victim.offset, victim.data));
      victim.dirty = false;
      --dirty_count_;
    }
    index_.erase(victim.offset);
    lru_.pop_back();
  }
  return {};
}

Result<uint8_t*> TableCache::get(uint64_t offset) {
  if (auto it = index_.find(offset); it != index_.end()) return touch(it->second).data.data();
  SKIFF_TRY_VOID(make_room());
  Entry e{offset, false, std::vector<uint8_t>(table_bytes_)};
  SKIFF_TRY_VOID(reader_(offset, e.data));
  lru_.push_front(std::move(e));
  index_[offset] = lru_.begin();
  return lru_.front().data.data();
}

Result<uint8_t*> TableCache::create(uint64_t offset) {
  if (auto it = index_.find(offset); it != index_.end()) {
    Entry& e = touch(it->second);
    std::fill(e.data.begin(), e.data.end(), uint8_t{0});
    if (!e.dirty) ++dirty_count_;
    e.dirty = true;
    return e.data.data();
  }
  SKIFF_TRY_VOID(make_room());
  lru_.push_front(Entry{offset, true, std::vector<uint8_t>(table_bytes_)});
  index_[offset] = lru_.begin();
  ++dirty_count_;
  return lru_.front().data.data();
}

void TableCache::mark_dirty(uint64_t offset) {
  auto it = index_.find(offset);
  if (it == index_.end() || it->second->dirty) return;
  it->second->dirty = true;
  ++dirty_count_;
}

Result<> TableCache::flush() {
  if (dirty_count_ == 0) return {};
  std::vector<Entry*> dirty;
  for (Entry& e : lru_)
    if (e.dirty) dirty.push_back(&e);
  std::sort(dirty.begin(), dirty.end(),
            [](const Entry* a, const Entry* b) { return a->offset < b->offset; });
  for (Entry* e : dirty) {
    SKIFF_TRY_VOID(writer_(e->offset, e->data));
    e->dirty = false;
    --dirty_count_;
  }
  return {};
}

void TableCache::clear() {
  lru_.clear();
  index_.clear();
  dirty_count_ = 0;
}

}  // namespace skiff::qcow2

// Test helpers: a guest RAM over a std::vector and a fake virtio driver
// that lays out a split ring in it the way Linux's virtio_ring does
// (descriptor table, then the available ring, then the used ring on the
// next 4 KiB boundary; chains take descriptors from a free list, readable
// buffers first; the avail idx is published after the ring entry) and
// computes "do I need to kick?" with vring_need_event. Hostile tests poke
// the raw structures through the same helper.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "memory/guest_memory.h"
#include "virtio/queue.h"

namespace skiff::virtio::testing {

// Guest RAM at [kRamBase, kRamBase + size): address 0 is not RAM, so a
// zeroed descriptor is out of range rather than accidentally valid.
struct FakeGuest {
  static constexpr uint64_t kRamBase = 0x100000;
  explicit FakeGuest(size_t size = 1 << 20) : ram(size, 0) {
    mem = *GuestMemory::create({{kRamBase, ram.size(), ram.data()}});
  }
  std::span<uint8_t> host(uint64_t gpa, size_t len) {
    return std::span(ram).subspan(static_cast<size_t>(gpa - kRamBase), len);
  }
  template <typename T>
  T get(uint64_t gpa) {
    T v;
    std::memcpy(&v, ram.data() + (gpa - kRamBase), sizeof v);
    return v;
  }
  template <typename T>
  void put(uint64_t gpa, const T& v) {
    std::memcpy(ram.data() + (gpa - kRamBase), &v, sizeof v);
  }
  std::vector<uint8_t> ram;
  GuestMemory mem;
};

struct Buf {
  uint64_t gpa;
  uint32_t len;
  bool writable;
};

// `Guest` is FakeGuest or anything with the same kRamBase/host/get/put
// (a memfd-backed guest for vhost-user tests).
template <typename Guest>
class BasicFakeDriver {
 public:
  // Rings at `base` (default: the start of RAM); the data area after them.
  // Devices with several queues give each driver its own base.
  BasicFakeDriver(Guest& g, uint16_t size, uint64_t base = Guest::kRamBase)
      : g_(g),
        size_(size),
        desc_(base),
        avail_(desc_ + 16ull * size),
        used_((avail_ + 6 + 2ull * size + 4095) & ~4095ull),
        data_start_((used_ + 6 + 8ull * size + 4095) & ~4095ull),
        data_(data_start_) {}

  uint64_t desc_gpa() const { return desc_; }
  uint64_t avail_gpa() const { return avail_; }
  uint64_t used_gpa() const { return used_; }
  uint16_t size() const { return size_; }

  void configure(Queue& q) const {
    q.set_size(size_);
    q.set_desc_table(desc_);
    q.set_avail_ring(avail_);
    q.set_used_ring(used_);
    q.set_ready(true);
  }

  // A fresh data buffer of `len` bytes (16-byte aligned), zero-filled.
  uint64_t alloc(uint32_t len) {
    uint64_t gpa = data_;
    data_ = (data_ + len + 15) & ~15ull;
    std::memset(g_.host(gpa, len).data(), 0, len);
    return gpa;
  }

  // Linux virtqueue_add_split: chain descriptors from the free list and
  // make the head available. Returns the head.
  uint16_t add_chain(const std::vector<Buf>& bufs) {
    uint16_t head = next_free_;
    for (size_t i = 0; i < bufs.size(); ++i) {
      uint16_t idx = static_cast<uint16_t>((head + i) % size_);
      uint16_t next = static_cast<uint16_t>((idx + 1) % size_);
      bool last = i + 1 == bufs.size();
      set_desc(idx, {bufs[i].gpa, bufs[i].len,
                     static_cast<uint16_t>((bufs[i].writable ? kDescFlagWrite : 0) |
                                           (last ? 0 : kDescFlagNext)),
                     static_cast<uint16_t>(last ? 0 : next)});
    }
    next_free_ = static_cast<uint16_t>((head + bufs.size()) % size_);
    publish(head);
    return head;
  }

  // The same buffers through one indirect table (VIRTIO_F_INDIRECT_DESC).
  uint16_t add_indirect(const std::vector<Buf>& bufs) {
    uint64_t table = alloc(static_cast<uint32_t>(16 * bufs.size()));
    for (size_t i = 0; i < bufs.size(); ++i) {
      bool last = i + 1 == bufs.size();
      VirtqDesc d{bufs[i].gpa, bufs[i].len,
                  static_cast<uint16_t>((bufs[i].writable ? kDescFlagWrite : 0) |
                                        (last ? 0 : kDescFlagNext)),
                  static_cast<uint16_t>(last ? 0 : i + 1)};
      g_.put(table + 16 * i, d);
    }
    uint16_t head = next_free_;
    set_desc(head, {table, static_cast<uint32_t>(16 * bufs.size()), kDescFlagIndirect, 0});
    next_free_ = static_cast<uint16_t>((head + 1) % size_);
    publish(head);
    return head;
  }

  // --- raw access for hostile tests
  void set_desc(uint16_t index, VirtqDesc d) { g_.put(desc_ + 16ull * index, d); }
  // Writes `head` into the next avail slot and bumps avail idx.
  void publish(uint16_t head) {
    g_.template put<uint16_t>(avail_ + 4 + 2ull * (avail_idx_ % size_), head);
    set_avail_idx(static_cast<uint16_t>(avail_idx_ + 1));
  }
  void set_avail_idx(uint16_t idx) {
    avail_idx_ = idx;
    std::atomic_thread_fence(std::memory_order_release);
    g_.template put<uint16_t>(avail_ + 2, idx);
  }
  uint16_t avail_idx() const { return avail_idx_; }
  void set_avail_flags(uint16_t flags) { g_.template put<uint16_t>(avail_, flags); }
  void set_used_event(uint16_t v) { g_.template put<uint16_t>(avail_ + 4 + 2ull * size_, v); }
  uint16_t avail_event() { return g_.template get<uint16_t>(used_ + 4 + 8ull * size_); }
  uint16_t used_idx() { return g_.template get<uint16_t>(used_ + 2); }
  VirtqUsedElem used_elem(uint16_t ring_pos) {
    return g_.template get<VirtqUsedElem>(used_ + 4 + 8ull * (ring_pos % size_));
  }

  // Linux virtqueue_kick_prepare_split with EVENT_IDX: kick if the device's
  // avail_event lies in the entries added since the last kick decision.
  bool kick_needed_event_idx() {
    uint16_t new_idx = avail_idx_;
    uint16_t old = kicked_at_;
    kicked_at_ = new_idx;
    uint16_t event = avail_event();
    return static_cast<uint16_t>(new_idx - event - 1) < static_cast<uint16_t>(new_idx - old);
  }
  // A driver starting over after a device reset: rings zeroed, indices 0.
  void restart() {
    std::memset(g_.host(desc_, static_cast<size_t>(data_start_ - desc_)).data(), 0,
                static_cast<size_t>(data_start_ - desc_));
    next_free_ = avail_idx_ = kicked_at_ = 0;
  }
  // Start both sides of the free-running indices at `idx` (wrap tests).
  void start_indices_at(uint16_t idx) {
    avail_idx_ = idx;
    kicked_at_ = idx;
    g_.template put<uint16_t>(avail_ + 2, idx);
    g_.template put<uint16_t>(used_ + 2, idx);
  }

 private:
  Guest& g_;
  uint16_t size_;
  uint64_t desc_, avail_, used_, data_start_, data_;
  uint16_t next_free_ = 0;
  uint16_t avail_idx_ = 0;
  uint16_t kicked_at_ = 0;
};

using FakeDriver = BasicFakeDriver<FakeGuest>;

}  // namespace skiff::virtio::testing

#include "virtio/queue.h"

#include <atomic>
#include <bit>
#include <cstring>

namespace skiff::virtio {

namespace {

// Ring field offsets (virtio 1.2 §2.7.6, §2.7.8).
constexpr uint64_t kRingFlags = 0;
constexpr uint64_t kRingIdx = 2;
constexpr uint64_t kRingEntries = 4;

// §2.7.5: "Drivers MUST NOT add a descriptor chain longer than 2^32 bytes
// in total".
constexpr uint64_t kMaxChainBytes = 1ull << 32;

// The rings are shared with a driver on another CPU: 16-bit index words are
// accessed atomically. activate() checked their alignment.
uint16_t load_u16(uint8_t* p, std::memory_order order) {
  return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).load(order);
}
void store_u16(uint8_t* p, uint16_t v, std::memory_order order) {
  std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).store(v, order);
}

static_assert(std::endian::native == std::endian::little,
              "virtio 1.x rings are little-endian; a big-endian host needs byte swaps here");

}  // namespace

Queue::Queue(uint16_t max_size) : max_size_(max_size), size_(max_size) {}

Result<> Queue::activate(const GuestMemory& mem, bool event_idx, bool indirect_desc) {
  // §2.7: split queue sizes are powers of 2, at most 32768; and never more
  // than the device offered in queue_size.
  if (size_ == 0 || !std::has_single_bit(size_) || size_ > kMaxQueueSize)
    return fail("queue size {} is not a power of 2 in [1, 32768]", size_);
  if (size_ > max_size_) return fail("queue size {} exceeds the maximum {}", size_, max_size_);
  // §2.7 "Virtqueue Part alignment": descriptor table 16, avail 2, used 4.
  if (desc_gpa_ % 16 != 0) return fail("descriptor table {:#x} is not 16-byte aligned", desc_gpa_);
  if (avail_gpa_ % 2 != 0) return fail("available ring {:#x} is not 2-byte aligned", avail_gpa_);
  if (used_gpa_ % 4 != 0) return fail("used ring {:#x} is not 4-byte aligned", used_gpa_);

  auto desc = mem.slice(desc_gpa_, desc_table_bytes(size_));
  if (!desc)
    return fail("descriptor table [{:#x}, +{:#x}) is not RAM", desc_gpa_, desc_table_bytes(size_));
  auto avail = mem.slice(avail_gpa_, avail_ring_bytes(size_));
  if (!avail)
    return fail("available ring [{:#x}, +{:#x}) is not RAM", avail_gpa_, avail_ring_bytes(size_));
  auto used = mem.slice(used_gpa_, used_ring_bytes(size_));
  if (!used) return fail("used ring [{:#x}, +{:#x}) is not RAM", used_gpa_, used_ring_bytes(size_));
  // Guest alignment only implies host alignment if the region's host
  // mapping is itself aligned; atomic_ref needs the real thing.
  if (reinterpret_cast<uintptr_t>(avail->data()) % 2 != 0 ||
      reinterpret_cast<uintptr_t>(used->data()) % 4 != 0)
    return fail("ring host mapping is misaligned (guest RAM region not page-aligned in the host)");

  mem_ = &mem;
  event_idx_ = event_idx;
  indirect_desc_ = indirect_desc;
  desc_ = desc->data();
  avail_ = avail->data();
  used_ = used->data();
  return {};
}

void Queue::reset() {
  size_ = max_size_;
  desc_gpa_ = avail_gpa_ = used_gpa_ = 0;
  ready_ = false;
  mem_ = nullptr;
  event_idx_ = indirect_desc_ = false;
  desc_ = avail_ = used_ = nullptr;
  next_avail_ = next_used_ = signalled_used_ = 0;
  signalled_used_valid_ = false;
}

void Queue::set_ring_positions(uint16_t next_avail, uint16_t next_used) {
  next_avail_ = next_avail;
  next_used_ = next_used;
  signalled_used_valid_ = false;
}

uint16_t Queue::load_avail_idx() const {
  // Acquire: the ring entries and descriptors the driver published before
  // bumping idx are read after this load (§2.7.13, driver side: "write
  // barrier before updating idx").
  return load_u16(avail_ + kRingIdx, std::memory_order_acquire);
}

void Queue::publish_avail_event() {
  // avail_event sits after the used ring entries (§2.7.8): "notify me when
  // you make entry next_avail_ available".
  store_u16(used_ + kRingEntries + 8ull * size_, next_avail_, std::memory_order_relaxed);
}

Result<std::optional<DescriptorChain>> Queue::pop() {
  DescriptorChain chain;
  bool got = SKIFF_TRY(pop_into(chain));
  if (!got) return std::optional<DescriptorChain>();
  return std::optional<DescriptorChain>(std::move(chain));
}

Result<bool> Queue::pop_into(DescriptorChain& chain) {
  if (mem_ == nullptr) return fail("queue is not active");
  uint16_t avail_idx = load_avail_idx();
  if (avail_idx == next_avail_) {
    if (!event_idx_) return false;
    // Ask for a notification on the next buffer, then look again: the
    // driver may have added one after our load but before it read
    // avail_event, and then it would not notify (§2.7.10).
    publish_avail_event();
    std::atomic_thread_fence(std::memory_order_seq_cst);
    avail_idx = load_avail_idx();
    if (avail_idx == next_avail_) return false;
  }
  // Free-running 16-bit indices: the distance is modulo 2^16, so wrap-around
  // at 65535 is ordinary. More than `size` outstanding cannot be honest.
  uint16_t pending = static_cast<uint16_t>(avail_idx - next_avail_);
  if (pending > size_)
    return fail("available index {} is {} entries ahead of {} (queue size {})", avail_idx, pending,
                next_avail_, size_);

  uint16_t head;
  std::memcpy(&head, avail_ + kRingEntries + 2ull * (next_avail_ % size_), sizeof head);
  if (head >= size_)
    return fail("available ring entry {} is out of range (queue size {})", head, size_);

  SKIFF_TRY_VOID(walk(head, chain));
  ++next_avail_;
  if (event_idx_) publish_avail_event();
  return true;
}

Result<> Queue::add_buffer(const VirtqDesc& d, DescriptorChain& chain) const {
  if (d.len == 0) return fail("descriptor at {:#x} has zero length", d.addr);
  bool writable = (d.flags & kDescFlagWrite) != 0;
  if (!writable && chain.num_readable_ != chain.buffers_.size())
    return fail("readable descriptor at {:#x} follows a writable one (virtio 1.2 §2.7.4.2)",
                d.addr);
  // Both sums are < 2^33 here (each term < 2^32, total kept <= 2^32), so
  // the additions cannot overflow 64 bits; the bound is the spec's.
  uint64_t total = chain.readable_bytes_ + chain.writable_bytes_ + d.len;
  if (total > kMaxChainBytes) return fail("descriptor chain total length exceeds 2^32 bytes");
  auto bytes = mem_->slice(d.addr, d.len);
  if (!bytes) return fail("descriptor buffer [{:#x}, +{:#x}) is not RAM", d.addr, d.len);
  chain.buffers_.push_back(*bytes);
  if (writable) {
    chain.writable_bytes_ += d.len;
  } else {
    chain.readable_bytes_ += d.len;
    ++chain.num_readable_;
  }
  return {};
}

Result<> Queue::walk(uint16_t head, DescriptorChain& chain) const {
  chain.clear(head);
  uint16_t index = head;
  // A chain visits at most `size` descriptors; one more means a loop or a
  // chain longer than the queue (§2.7.5).
  for (uint32_t count = 0;; ++count) {
    if (count == size_)
      return fail("descriptor chain from head {} is longer than the queue size {} (loop?)", head,
                  size_);
    VirtqDesc d;
    std::memcpy(&d, desc_ + 16ull * index, sizeof d);
    if (d.flags & kDescFlagIndirect) {
      // §2.7.5.3.1: INDIRECT needs the feature and excludes NEXT, so an
      // indirect descriptor always ends the direct part of the chain.
      if (!indirect_desc_) return fail("indirect descriptor used without VIRTIO_F_INDIRECT_DESC");
      if (d.flags & kDescFlagNext) return fail("descriptor {} sets both INDIRECT and NEXT", index);
      return walk_indirect(d, chain);
    }
    SKIFF_TRY_VOID(add_buffer(d, chain));
    if (!(d.flags & kDescFlagNext)) return {};
    if (d.next >= size_)
      return fail("descriptor {} points to {} beyond the queue size {}", index, d.next, size_);
    index = d.next;
  }
}

Result<> Queue::walk_indirect(const VirtqDesc& table, DescriptorChain& chain) const {
  // §2.7.5.3: the table holds len/16 descriptors; the chain inside starts
  // at entry 0 and is bounded by that count. `next` is 16 bits, so entries
  // past 65536 are unreachable and need not be mapped.
  if (table.len == 0 || table.len % 16 != 0)
    return fail("indirect table at {:#x} has length {} (not a non-zero multiple of 16)", table.addr,
                table.len);
  uint32_t entries = table.len / 16;
  if (entries > 65536) entries = 65536;
  auto bytes = mem_->slice(table.addr, 16ull * entries);
  if (!bytes) return fail("indirect table [{:#x}, +{:#x}) is not RAM", table.addr, table.len);
  const uint8_t* base = bytes->data();
  uint32_t index = 0;
  for (uint32_t count = 0;; ++count) {
    if (count == entries)
      return fail("indirect chain at {:#x} is longer than its table ({} entries, loop?)",
                  table.addr, entries);
    VirtqDesc d;
    std::memcpy(&d, base + 16ull * index, sizeof d);
    // §2.7.5.3.1: "The driver MUST NOT set the VIRTQ_DESC_F_INDIRECT flag
    // within an indirect descriptor".
    if (d.flags & kDescFlagIndirect)
      return fail("nested indirect descriptor in table at {:#x}", table.addr);
    SKIFF_TRY_VOID(add_buffer(d, chain));
    if (!(d.flags & kDescFlagNext)) return {};
    if (d.next >= entries)
      return fail("indirect descriptor {} points to {} beyond its table ({} entries)", index,
                  d.next, entries);
    index = d.next;
  }
}

Result<> Queue::add_used(uint16_t head, uint32_t len) {
  if (mem_ == nullptr) return fail("queue is not active");
  // A head the device did not pop is a device bug, but a cheap check keeps
  // it from corrupting the driver's bookkeeping.
  if (head >= size_) return fail("used head {} is out of range (queue size {})", head, size_);
  VirtqUsedElem e{head, len};
  std::memcpy(used_ + kRingEntries + 8ull * (next_used_ % size_), &e, sizeof e);
  ++next_used_;
  // Release: the element above is visible before the index that covers it.
  store_u16(used_ + kRingIdx, next_used_, std::memory_order_release);
  return {};
}

bool Queue::needs_notification() {
  if (mem_ == nullptr) return false;
  // Full fence: our used idx store must be visible before we read the
  // driver's suppression state, or both sides can miss each other (§2.7.10).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint16_t old_used = signalled_used_;
  bool old_valid = signalled_used_valid_;
  signalled_used_ = next_used_;
  signalled_used_valid_ = true;
  if (old_valid && old_used == next_used_) return false;  // nothing new since last time
  if (!event_idx_)
    return (load_u16(avail_ + kRingFlags, std::memory_order_relaxed) & kAvailFlagNoInterrupt) == 0;
  if (!old_valid) return true;
  // used_event follows the avail ring entries (§2.7.6). Notify if it lies
  // in (old_used, next_used], i.e. the driver asked to hear about one of
  // the entries added since the last notification (vring_need_event).
  uint16_t used_event = load_u16(avail_ + kRingEntries + 2ull * size_, std::memory_order_relaxed);
  return static_cast<uint16_t>(next_used_ - used_event - 1) <
         static_cast<uint16_t>(next_used_ - old_used);
}

}  // namespace skiff::virtio

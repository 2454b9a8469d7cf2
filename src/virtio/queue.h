// Queue: the device side of a virtio split virtqueue (virtio 1.2 §2.7).
//
// The driver (guest) owns three areas in guest memory: the descriptor table,
// the available ring and the used ring. Every number read from them is
// hostile: ring indices, descriptor indices, addresses, lengths, flags. The
// Queue checks all of them here, once, so that devices only ever see spans
// that lie inside guest RAM (DESIGN.md: "Queue for ring indices and
// descriptor chains"):
//   - ring areas are checked against GuestMemory once at activate(), with
//     the alignment §2.7 requires (desc 16, avail 2, used 4);
//   - an avail idx more than `size` ahead of the last one seen is an error;
//   - a chain is bounded by the queue size (an indirect table by its own
//     length / 16), which also catches loops (§2.7.5: "a driver MUST NOT
//     create a descriptor chain longer than the Queue Size");
//   - every buffer goes through GuestMemory::slice (address + length,
//     overflow-checked) and the total length must fit in 32 bits (§2.7.5:
//     "MUST NOT add a descriptor chain longer than 2^32 bytes");
//   - writable buffers must follow readable ones (§2.7.4.2);
//   - nested indirect tables and INDIRECT together with NEXT are refused
//     (§2.7.5.3.1); a zero-length buffer is refused (QEMU does the same; no
//     Linux driver produces one).
// Any violation is returned as an Error; the device base turns it into
// NEEDS_RESET (device.h). Nothing here logs or aborts.
//
// Concurrency: the driver runs on another CPU while the device walks the
// rings. avail->idx is read with acquire semantics (the ring entries and
// descriptors it publishes are read after it), used->idx is written with
// release semantics (the used element is visible before the index), and the
// notification checks use a full fence (§2.7.10: the device must see the
// driver's used_event after its own used idx store). Descriptors are copied
// out of guest memory once, then validated, so a driver that changes them
// concurrently cannot make a checked value differ from the used one.
//
// Missing: packed virtqueues (§2.8), VIRTIO_F_IN_ORDER, save/restore of the
// ring position beyond next_avail()/next_used() accessors (the seam for
// vhost-user GET/SET_VRING_BASE and snapshots).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/result.h"
#include "memory/guest_memory.h"

namespace skiff::virtio {

// Split ring layouts (virtio 1.2 §2.7.5, §2.7.6, §2.7.8). The kernel's
// <linux/virtio_ring.h> does not compile as C++ (implicit void* conversions
// in vring_init), so the layouts are restated here with static_asserts.
struct VirtqDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(VirtqDesc) == 16);

struct VirtqUsedElem {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(VirtqUsedElem) == 8);

inline constexpr uint16_t kDescFlagNext = 1;          // VRING_DESC_F_NEXT
inline constexpr uint16_t kDescFlagWrite = 2;         // VRING_DESC_F_WRITE
inline constexpr uint16_t kDescFlagIndirect = 4;      // VRING_DESC_F_INDIRECT
inline constexpr uint16_t kAvailFlagNoInterrupt = 1;  // VRING_AVAIL_F_NO_INTERRUPT
inline constexpr uint16_t kUsedFlagNoNotify = 1;      // VRING_USED_F_NO_NOTIFY
inline constexpr uint32_t kMaxQueueSize = 32768;      // §2.7: Queue Size <= 32768

// Bytes each ring area occupies for a queue of `size` entries, including
// the event-index words (used_event, avail_event) that exist with or
// without VIRTIO_F_EVENT_IDX (§2.7.6, §2.7.8).
constexpr uint64_t desc_table_bytes(uint32_t size) {
  return 16ull * size;
}
constexpr uint64_t avail_ring_bytes(uint32_t size) {
  return 6ull + 2ull * size;
}
constexpr uint64_t used_ring_bytes(uint32_t size) {
  return 6ull + 8ull * size;
}

// One request as the device sees it: the head index (to give back with
// add_used) and the guest buffers in chain order, readable ones first.
// Reusable: pop_into() clears it and keeps the capacity, so a device that
// keeps one per queue does not allocate per request.
class DescriptorChain {
 public:
  [[nodiscard]] uint16_t head() const { return head_; }
  // Driver -> device buffers.
  [[nodiscard]] std::span<const std::span<uint8_t>> readable() const {
    return std::span(buffers_).first(num_readable_);
  }
  // Device -> driver buffers.
  [[nodiscard]] std::span<const std::span<uint8_t>> writable() const {
    return std::span(buffers_).subspan(num_readable_);
  }
  [[nodiscard]] uint64_t readable_bytes() const { return readable_bytes_; }
  [[nodiscard]] uint64_t writable_bytes() const { return writable_bytes_; }
  // Frees the buffer list if a long chain grew it past `max` entries, so a
  // device that keeps many chains does not keep what a driver's longest
  // chains once needed (up to 64 Ki entries each, an indirect table's).
  void trim(size_t max) {
    if (buffers_.capacity() <= max) return;
    buffers_.clear();
    buffers_.shrink_to_fit();
  }

 private:
  friend class Queue;
  void clear(uint16_t head) {
    head_ = head;
    buffers_.clear();
    num_readable_ = 0;
    readable_bytes_ = 0;
    writable_bytes_ = 0;
  }

  uint16_t head_ = 0;
  std::vector<std::span<uint8_t>> buffers_;
  size_t num_readable_ = 0;
  uint64_t readable_bytes_ = 0;
  uint64_t writable_bytes_ = 0;
};

class Queue {
 public:
  explicit Queue(uint16_t max_size);

  // --- configuration written by the transport before the queue is enabled
  [[nodiscard]] uint16_t max_size() const { return max_size_; }
  [[nodiscard]] uint16_t size() const { return size_; }
  void set_size(uint16_t size) { size_ = size; }
  [[nodiscard]] uint64_t desc_table() const { return desc_gpa_; }
  [[nodiscard]] uint64_t avail_ring() const { return avail_gpa_; }
  [[nodiscard]] uint64_t used_ring() const { return used_gpa_; }
  void set_desc_table(uint64_t gpa) { desc_gpa_ = gpa; }
  void set_avail_ring(uint64_t gpa) { avail_gpa_ = gpa; }
  void set_used_ring(uint64_t gpa) { used_gpa_ = gpa; }
  [[nodiscard]] bool ready() const { return ready_; }
  void set_ready(bool ready) { ready_ = ready; }

  // Checks size and ring placement against `mem` and starts using the
  // queue. `mem` must outlive the activation (until reset()).
  [[nodiscard]] Result<> activate(const GuestMemory& mem, bool event_idx, bool indirect_desc);
  [[nodiscard]] bool active() const { return mem_ != nullptr; }
  // Back to the power-on state: not ready, not active, indices zero.
  void reset();

  // The next available chain, nothing if the driver has not made one
  // available, or an error if the driver broke the ring rules.
  [[nodiscard]] Result<std::optional<DescriptorChain>> pop();
  // Same, filling a caller-owned chain (no allocation once warm); returns
  // false if nothing was available.
  [[nodiscard]] Result<bool> pop_into(DescriptorChain& chain);
  // Hands a chain back: `len` bytes were written into its writable part.
  [[nodiscard]] Result<> add_used(uint16_t head, uint32_t len);
  // Whether the driver wants an interrupt for the used buffers added since
  // the last call (§2.7.10: used_event with EVENT_IDX, else the
  // VRING_AVAIL_F_NO_INTERRUPT flag).
  [[nodiscard]] bool needs_notification();

  // Ring positions (vhost-user GET/SET_VRING_BASE, snapshots).
  [[nodiscard]] uint16_t next_avail() const { return next_avail_; }
  [[nodiscard]] uint16_t next_used() const { return next_used_; }
  void set_ring_positions(uint16_t next_avail, uint16_t next_used);

 private:
  [[nodiscard]] Result<> walk(uint16_t head, DescriptorChain& chain) const;
  [[nodiscard]] Result<> add_buffer(const VirtqDesc& d, DescriptorChain& chain) const;
  [[nodiscard]] Result<> walk_indirect(const VirtqDesc& table, DescriptorChain& chain) const;
  [[nodiscard]] uint16_t load_avail_idx() const;
  void publish_avail_event();

  uint16_t max_size_;
  uint16_t size_;
  uint64_t desc_gpa_ = 0;
  uint64_t avail_gpa_ = 0;
  uint64_t used_gpa_ = 0;
  bool ready_ = false;

  // Set by activate(); host views of the whole ring areas.
  const GuestMemory* mem_ = nullptr;
  bool event_idx_ = false;
  bool indirect_desc_ = false;
  uint8_t* desc_ = nullptr;
  uint8_t* avail_ = nullptr;
  uint8_t* used_ = nullptr;

  uint16_t next_avail_ = 0;
  uint16_t next_used_ = 0;
  uint16_t signalled_used_ = 0;
  bool signalled_used_valid_ = false;
};

}  // namespace skiff::virtio

// Byte-stream views over a descriptor chain's buffers. virtio 1.x devices
// must not assume any particular split of a request into descriptors
// (virtio 1.2 §2.7.4 "Message Framing"), so a header may straddle two
// buffers and a status byte may share one with data. These helpers treat a
// list of guest spans (already checked by Queue) as one contiguous stream.
#pragma once

#include <cstdint>
#include <span>

namespace skiff::virtio {

using BufferList = std::span<const std::span<uint8_t>>;

// Total bytes in the list.
[[nodiscard]] uint64_t total_bytes(BufferList bufs);

// Copies min(out.size(), bytes available after offset) bytes starting at
// stream offset `offset` into `out`; returns the number copied.
size_t copy_from_buffers(BufferList bufs, uint64_t offset, std::span<uint8_t> out);

// Copies `in` into the stream at `offset`, as far as it fits; returns the
// number copied.
size_t copy_to_buffers(BufferList bufs, uint64_t offset, std::span<const uint8_t> in);

// Calls fn(piece) for each contiguous piece of the stream range
// [offset, offset + len), in order, stopping early (and returning false) if
// fn returns false. The range must lie within the stream (callers check).
// A template so the hot path (every block request) does not go through
// std::function.
template <typename Fn>
bool for_each_piece(BufferList bufs, uint64_t offset, uint64_t len, Fn&& fn) {
  for (auto b : bufs) {
    if (len == 0) break;
    if (offset >= b.size()) {
      offset -= b.size();
      continue;
    }
    uint64_t take = b.size() - offset < len ? b.size() - offset : len;
    if (!fn(b.subspan(static_cast<size_t>(offset), static_cast<size_t>(take)))) return false;
    len -= take;
    offset = 0;
  }
  return true;
}

// The byte at stream offset `offset`, or nullptr if past the end.
[[nodiscard]] uint8_t* byte_at(BufferList bufs, uint64_t offset);

}  // namespace skiff::virtio

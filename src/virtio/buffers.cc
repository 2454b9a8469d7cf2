#include "virtio/buffers.h"

#include <algorithm>
#include <cstring>

namespace skiff::virtio {

uint64_t total_bytes(BufferList bufs) {
  uint64_t n = 0;
  for (auto b : bufs) n += b.size();
  return n;
}

size_t copy_from_buffers(BufferList bufs, uint64_t offset, std::span<uint8_t> out) {
  size_t done = 0;
  for_each_piece(bufs, offset, out.size(), [&](std::span<uint8_t> piece) {
    std::memcpy(out.data() + done, piece.data(), piece.size());
    done += piece.size();
    return true;
  });
  return done;
}

size_t copy_to_buffers(BufferList bufs, uint64_t offset, std::span<const uint8_t> in) {
  size_t done = 0;
  for_each_piece(bufs, offset, in.size(), [&](std::span<uint8_t> piece) {
    std::memcpy(piece.data(), in.data() + done, piece.size());
    done += piece.size();
    return true;
  });
  return done;
}

uint8_t* byte_at(BufferList bufs, uint64_t offset) {
  for (auto b : bufs) {
    if (offset < b.size()) return b.data() + offset;
    offset -= b.size();
  }
  return nullptr;
}

}  // namespace skiff::virtio

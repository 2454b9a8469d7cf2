// ImageBytes: bounds-checked little-endian reads from a kernel image file.
// Kernel, initramfs and ELF files are input we do not trust (a corrupt or
// hostile file must give an error, never a read past the buffer), so every
// field the loaders read goes through here. Offsets and lengths are checked
// with overflow-safe arithmetic.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

namespace skiff::x86 {

class ImageBytes {
 public:
  ImageBytes() = default;
  explicit ImageBytes(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  [[nodiscard]] uint64_t size() const { return bytes_.size(); }
  [[nodiscard]] std::span<const uint8_t> all() const { return bytes_; }

  // True if [offset, offset + len) lies inside the file.
  [[nodiscard]] bool has(uint64_t offset, uint64_t len) const {
    return offset <= bytes_.size() && len <= bytes_.size() - offset;
  }

  // The bytes [offset, offset + len), or nullopt if they run past the end.
  [[nodiscard]] std::optional<std::span<const uint8_t>> range(uint64_t offset, uint64_t len) const {
    if (!has(offset, len)) return std::nullopt;
    return bytes_.subspan(static_cast<size_t>(offset), static_cast<size_t>(len));
  }

  [[nodiscard]] std::optional<uint8_t> u8(uint64_t offset) const { return get<uint8_t>(offset); }
  [[nodiscard]] std::optional<uint16_t> u16(uint64_t offset) const { return get<uint16_t>(offset); }
  [[nodiscard]] std::optional<uint32_t> u32(uint64_t offset) const { return get<uint32_t>(offset); }
  [[nodiscard]] std::optional<uint64_t> u64(uint64_t offset) const { return get<uint64_t>(offset); }

  // True if the bytes at offset equal s (false if they run past the end).
  [[nodiscard]] bool matches(uint64_t offset, std::string_view s) const {
    auto r = range(offset, s.size());
    return r && std::memcmp(r->data(), s.data(), s.size()) == 0;
  }

 private:
  // x86 is little-endian, as are all the formats read here; memcpy keeps
  // unaligned reads defined.
  template <typename T>
  std::optional<T> get(uint64_t offset) const {
    auto r = range(offset, sizeof(T));
    if (!r) return std::nullopt;
    T v;
    std::memcpy(&v, r->data(), sizeof(T));
    return v;
  }

  std::span<const uint8_t> bytes_;
};

}  // namespace skiff::x86

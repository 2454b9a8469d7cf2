// Helpers shared by the skiff-img subcommands: opening images, reporting
// errors, size parsing, and qemu-img-style path handling.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "block/disk_image.h"

namespace skiff::img {

// Prints "skiff-img: <message>" to stderr.
void report(const Error& e);
void report(std::string_view message);

// Opens an image; format "" probes.
[[nodiscard]] Result<std::unique_ptr<DiskImage>> open_disk(const std::string& path,
                                                           const std::string& format,
                                                           bool read_only,
                                                           bool open_backing = true);

// qemu-img sizes: a number with an optional k/K, M, G, T, P, E suffix
// (powers of 1024; fractions like 1.5G allowed). The error names the text.
[[nodiscard]] Result<uint64_t> parse_image_size(std::string_view text);

// The backing file path as qemu resolves it: relative names are relative to
// the directory of the image that names them.
[[nodiscard]] std::string resolve_backing(const std::string& image, const std::string& backing);

// Bytes the file occupies on the host (st_blocks * 512).
[[nodiscard]] uint64_t allocated_bytes(const std::string& path);

// Chunk used for data copies (convert, compare, rebase, commit).
inline constexpr uint64_t kCopyChunk = 1 << 20;

[[nodiscard]] bool all_zero(const uint8_t* p, size_t n);

}  // namespace skiff::img

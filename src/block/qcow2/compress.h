// Compressed cluster codecs (spec: "Compressed Clusters Descriptor", header
// compression_type). zlib is raw deflate with a 4 KiB window (windowBits -12)
// as QEMU writes it; zstd is a normal zstd frame.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"

namespace skiff::qcow2 {

// Decompresses `in` until `out` is full. Trailing input is ignored (the
// descriptor's sector count may cover more than the data). Fails if the
// data ends before producing out.size() bytes.
[[nodiscard]] Result<> decompress_cluster(uint8_t compression_type, std::span<const uint8_t> in,
                                          std::span<uint8_t> out);

// Compresses one cluster. Returns an empty vector if the result would not be
// smaller than the input (the caller then writes the cluster uncompressed).
[[nodiscard]] Result<std::vector<uint8_t>> compress_cluster(uint8_t compression_type,
                                                            std::span<const uint8_t> in);

}  // namespace skiff::qcow2

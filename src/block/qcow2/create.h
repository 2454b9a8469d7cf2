// Creating a new qcow2 image with the layout QEMU's qcow2_co_create writes:
// header cluster, refcount table, refcount block(s), L1 table, then
// (preallocation) L2 tables and data clusters.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "block/qcow2/format.h"

namespace skiff::qcow2 {

enum class Preallocation { kOff, kMetadata, kFull };

// "off" | "metadata" | "full" (as qemu-img's -o preallocation=).
[[nodiscard]] Result<Preallocation> parse_preallocation(const std::string& s);

struct CreateOptions {
  uint64_t size = 0;              // virtual size in bytes (rounded up to 512)
  uint64_t cluster_size = 65536;  // power of two, 512 B .. 2 MiB
  uint32_t version = 3;           // 2 = compat=0.10, 3 = compat=1.1
  std::string backing_file;       // stored as given (relative to the image's directory)
  std::string backing_format;     // "raw" / "qcow2" / "" (no extension)
  uint8_t compression_type = kCompressionZlib;  // zstd needs version 3
  uint32_t refcount_bits = 16;                  // 1..64, power of two; version 2 needs 16
  Preallocation preallocation = Preallocation::kOff;
  bool lazy_refcounts = false;  // version 3 only
};

// Creates (or truncates) `path`. Validates the options and names the bad one.
[[nodiscard]] Result<> create(const std::string& path, const CreateOptions& options);

}  // namespace skiff::qcow2

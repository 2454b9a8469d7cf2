// open_image: opens a disk image of a named format, or probes it (qcow2 magic
// "QFI\xfb" at offset 0, else raw). Used by skiff-img, the VMM and for
// backing files.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "block/disk_image.h"

namespace skiff {

struct OpenImageOptions {
  std::string format;  // "raw", "qcow2", or "" to probe
  bool read_only = false;
  bool direct = false;                       // O_DIRECT (raw images only; qcow2 refuses it)
  size_t l2_cache_bytes = 1u << 20;          // qcow2: bounded L2 table cache
  size_t refcount_cache_bytes = 256u << 10;  // qcow2: refcount block cache
  bool open_backing = true;  // qcow2: open the backing chain (info/check may not want it)
  // Real paths of images above this one in a backing chain; used to refuse
  // loops. Callers normally leave it empty.
  std::vector<std::string> chain;
};

// "qcow2" or "raw" from the first bytes of the file.
[[nodiscard]] Result<std::string> probe_format(const std::string& path);

[[nodiscard]] Result<std::unique_ptr<DiskImage>> open_image(const std::string& path,
                                                            const OpenImageOptions& options);

}  // namespace skiff

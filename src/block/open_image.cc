#include "block/open_image.h"

#include <array>

#include "block/host_file.h"
#include "block/qcow2/format.h"
#include "block/qcow2/qcow2_image.h"
#include "block/raw_image.h"

namespace skiff {

Result<std::string> probe_format(const std::string& path) {
  HostFile f = SKIFF_TRY(HostFile::open(path, true));
  std::array<uint8_t, 4> magic{};
  size_t n = SKIFF_TRY(f.pread_some(0, magic));
  if (n == magic.size() && qcow2::load_be32(magic.data()) == qcow2::kMagic) return "qcow2";
  return "raw";
}

Result<std::unique_ptr<DiskImage>> open_image(const std::string& path,
                                              const OpenImageOptions& options) {
  std::string format = options.format;
  if (format.empty()) format = SKIFF_TRY(probe_format(path));
  if (format == "raw") {
    auto img = SKIFF_TRY(RawImage::open(path, options.read_only, options.direct));
    return std::unique_ptr<DiskImage>(std::move(img));
  }
  if (format == "qcow2") {
    if (options.direct)
      return fail("'{}' is a qcow2 image: direct=on is supported for raw images only", path);
    auto img = SKIFF_TRY(Qcow2Image::open(path, options));
    return std::unique_ptr<DiskImage>(std::move(img));
  }
  return fail("unknown image format '{}' for '{}' (use raw or qcow2)", format, path);
}

}  // namespace skiff

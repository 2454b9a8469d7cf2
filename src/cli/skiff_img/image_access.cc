#include "cli/skiff_img/image_access.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/units.h"
#include "block/open_image.h"

namespace skiff::img {

void report(const Error& e) {
  std::fprintf(stderr, "skiff-img: %s\n", e.what().c_str());
}
void report(std::string_view message) {
  std::fprintf(stderr, "skiff-img: %.*s\n", static_cast<int>(message.size()), message.data());
}

Result<std::unique_ptr<DiskImage>> open_disk(const std::string& path, const std::string& format,
                                             bool read_only, bool open_backing) {
  if (!format.empty() && format != "raw" && format != "qcow2")
    return fail("unknown format '{}' (expected raw or qcow2)", format);
  OpenImageOptions o;
  o.format = format;
  o.read_only = read_only;
  o.open_backing = open_backing;
  return open_image(path, o);
}

Result<uint64_t> parse_image_size(std::string_view text) {
  auto bad = [&] {
    return fail(
        "invalid size '{}': expected a number of bytes with an optional k, M, G, T, P "
        "or E suffix",
        text);
  };
  if (text.empty()) return bad();
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0) return bad();
  std::string number(text.substr(0, i));
  if (std::count(number.begin(), number.end(), '.') > 1) return bad();
  std::string_view suffix = text.substr(i);
  int shift = 0;
  if (!suffix.empty()) {
    if (suffix.size() > 1 && !(suffix.size() == 2 && (suffix[1] == 'B' || suffix[1] == 'b')))
      return bad();
    shift = binary_suffix_shift(suffix[0]);
    if (shift < 0) return bad();
  }
  long double v = std::strtold(number.c_str(), nullptr) * std::ldexp(1.0L, shift);
  if (!std::isfinite(v) || v >= 18446744073709551616.0L) return bad();
  if (v != std::floor(v)) return fail("invalid size '{}': not a whole number of bytes", text);
  return static_cast<uint64_t>(v);
}

std::string resolve_backing(const std::string& image, const std::string& backing) {
  if (backing.empty() || backing[0] == '/') return backing;
  auto slash = image.rfind('/');
  if (slash == std::string::npos) return backing;
  return image.substr(0, slash + 1) + backing;
}

uint64_t allocated_bytes(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

bool all_zero(const uint8_t* p, size_t n) {
  if (n == 0) return true;
  return p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0;
}

}  // namespace skiff::img

// The body shared by the libFuzzer target (qcow2_open_fuzz.cc) and the
// GCC-built replay/mutation test (tests/block/qcow2_fuzz_replay_test.cc):
// write the input to a file, open it as qcow2 read-only and writable, read,
// query block status and write a little. Any crash or sanitizer report is a
// bug; errors are expected.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "block/qcow2/qcow2_image.h"

namespace skiff::fuzz {

inline void exercise_qcow2(const uint8_t* data, size_t size, const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  for (bool read_only : {true, false}) {
    OpenImageOptions o;
    o.read_only = read_only;
    o.open_backing = false;  // inputs must not reach other files
    o.l2_cache_bytes = 4096;
    auto img = Qcow2Image::open(path, o);
    if (!img) continue;
    Qcow2Image& q = **img;
    const uint64_t vsize = q.size();
    std::vector<uint8_t> buf(8192);
    // A few reads spread over the disk (the virtual size may be huge).
    for (uint64_t i = 0; i < 8 && vsize > 0; ++i) {
      const uint64_t off = (vsize / 8) * i;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), vsize - off));
      (void)q.read(off, std::span(buf.data(), n));
      (void)q.block_status(off, n);
    }
    if (!read_only && vsize > 0) {
      std::fill(buf.begin(), buf.end(), uint8_t{0x5a});
      const size_t n = static_cast<size_t>(std::min<uint64_t>(3000, vsize));
      (void)q.write(vsize / 3 - std::min<uint64_t>(vsize / 3, 100), std::span(buf.data(), n));
      (void)q.write_zeroes(0, std::min<uint64_t>(vsize, 1 << 16), true);
      (void)q.discard(0, std::min<uint64_t>(vsize, 1 << 17));
      (void)q.flush();
    }
  }
}

}  // namespace skiff::fuzz

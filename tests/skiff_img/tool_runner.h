// Runs external tools (qemu-img, qemu-io, skiff-img) for the interop tests
// and reads images back as flat bytes.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace skiff::testing {

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};

inline RunResult run(const std::string& cmd) {
  RunResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

inline bool have_qemu_img() {
  return run("qemu-img --version").exit_code == 0;
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// The guest-visible content of an image, as qemu-img reads it.
inline std::vector<uint8_t> qemu_content(const std::string& image, const std::string& scratch) {
  run("qemu-img convert -O raw '" + image + "' '" + scratch + "'");
  return read_bytes(scratch);
}

// A fresh directory for one test's images under the build tree.
inline std::string make_scratch_dir(const std::string& name) {
  std::string dir = std::string(SKIFF_IMG_TEST_DIR) + "/" + name;
  run("rm -rf '" + dir + "' && mkdir -p '" + dir + "'");
  return dir;
}

}  // namespace skiff::testing

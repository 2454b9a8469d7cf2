// Helpers shared by the block tests (and the virtio-blk ones over real
// files): a per-test scratch directory, a pipe, running qemu-img / qemu-io,
// and deterministic test patterns.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/fd.h"

namespace skiff::testing {

// A fresh directory under the build tree's temp area, removed afterwards.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "skiff-block-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A pipe whose ends a test fills or drains to decide when a transfer
// makes progress.
struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    rd.reset(fds[0]);
    wr.reset(fds[1]);
  }
  Fd rd, wr;
};

inline bool have_tool(const char* name) {
  std::string cmd = std::string("command -v ") + name + " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

#define SKIP_WITHOUT_QEMU_IMG()                                                              \
  do {                                                                                       \
    if (!::skiff::testing::have_tool("qemu-img") || !::skiff::testing::have_tool("qemu-io")) \
      GTEST_SKIP() << "skipped: qemu-img/qemu-io not installed (apt install qemu-utils)";    \
  } while (0)

// Runs a shell command; returns its exit status and captures stdout+stderr.
struct CommandResult {
  int status = -1;
  std::string output;
};
inline CommandResult run(const std::string& cmd) {
  CommandResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

inline std::vector<uint8_t> random_bytes(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

}  // namespace skiff::testing

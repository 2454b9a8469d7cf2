// libFuzzer target: open + read + write of arbitrary bytes as a qcow2 image.
// Build with clang and -fsanitize=fuzzer,address (tests/fuzz/CMakeLists.txt);
// run bounded in CI, e.g.  qcow2_open_fuzz -max_total_time=30 corpus/
#include <unistd.h>

#include <string>

#include "fuzz/qcow2_fuzz_body.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/skiff-qcow2-fuzz-" + std::to_string(::getpid());
  skiff::fuzz::exercise_qcow2(data, size, path);
  return 0;
}

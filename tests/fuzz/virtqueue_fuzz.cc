// libFuzzer target: arbitrary bytes as split-ring configuration and guest
// memory; the walker must never crash or return spans outside guest RAM.
// Build with clang and -fsanitize=fuzzer,address (tests/fuzz/CMakeLists.txt);
// run bounded in CI, e.g.  virtqueue_fuzz -max_total_time=30 corpus/
#include "fuzz/virtqueue_fuzz_body.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (skiff::fuzz::exercise_virtqueue(data, size) < 0) __builtin_trap();
  return 0;
}

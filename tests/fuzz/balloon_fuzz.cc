// libFuzzer target: arbitrary bytes as the balloon's features, config
// writes and guest RAM with its rings; the device must never crash or
// discard outside guest RAM. Build with clang (tests/fuzz/CMakeLists.txt).
#include "fuzz/balloon_fuzz_body.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (skiff::fuzz::exercise_balloon(data, size) < 0) __builtin_trap();
  return 0;
}

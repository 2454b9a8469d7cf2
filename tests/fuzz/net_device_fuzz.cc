// libFuzzer target: arbitrary bytes as a hostile driver's script against
// virtio-net's transmit path, control queue and receive path (see
// net_device_fuzz_body.h for the input layout and the properties).
// Build with clang and -fsanitize=fuzzer,address (tests/fuzz/CMakeLists.txt);
// run bounded in CI, e.g.  net_device_fuzz -max_total_time=30 corpus/
#include "fuzz/net_device_fuzz_body.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (skiff::fuzz::exercise_net_device(data, size) < 0) __builtin_trap();
  return 0;
}

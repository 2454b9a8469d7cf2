// libFuzzer target: arbitrary bytes as a virtio-blk request; parsing and
// execution must never crash, touch the disk outside its capacity or put
// the status byte outside the writable buffers.
// Build with clang and -fsanitize=fuzzer,address (tests/fuzz/CMakeLists.txt);
// run bounded in CI, e.g.  blk_request_fuzz -max_total_time=30 corpus/
#include "fuzz/blk_request_fuzz_body.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (skiff::fuzz::exercise_blk_request(data, size) < 0) __builtin_trap();
  return 0;
}

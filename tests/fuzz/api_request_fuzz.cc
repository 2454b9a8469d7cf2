// libFuzzer target over the API request handler (tests/api/api_fuzz_body.h).
// Built only with clang; tests/api/api_fuzz_test.cc runs the same body
// under GCC for a bounded number of mutated inputs.
#include "api/api_fuzz_body.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  skiff::api::fuzz::run_one(data, size);
  return 0;
}

// Bounded mutation fuzzing of the API request handler under GCC (clang 14
// cannot build skiff's C++23, see tests/fuzz/CMakeLists.txt): seeds are
// valid and invalid requests; each round flips, inserts, deletes and splices
// bytes and runs the body in api_fuzz_body.h, which aborts on a broken
// invariant. SKIFF_FUZZ_ITERS sets the number of inputs (default 200000).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "api_fuzz_body.h"

namespace skiff::api {
namespace {

std::vector<std::string> seeds() {
  auto ep = [](size_t i, const std::string& body) {
    return std::string{'\x01', static_cast<char>(i)} + body;
  };
  return {
      ep(4,
         R"({"payload":{"kernel":"/k","cmdline":"x"},"cpus":{"boot_vcpus":2,"max_vcpus":2},"memory":{"size":67108864},"serial":{"mode":"File","file":"/f"},"console":{"mode":"Off"}})"),
      ep(4, R"({"payload":{"kernel":"/k"},"disks":[{"path":"/d"}],"rng":{"src":"/dev/urandom"}})"),
      ep(4,
         R"({"payload":{"kernel":"/k"},"memory":{"size":1e99,"zones":[]},"cpus":{"boot_vcpus":-1}})"),
      ep(4, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]"),
      ep(0, ""),
      ep(7, ""),
      std::string("\x01\xff/api/v1/vm.snapshot\0{\"destination_url\":\"file:///x\"}", 52),
      std::string("\x00\xff/api/v1/\xc3\x28\0", 13),
  };
}

TEST(ApiFuzz, HandlerSurvivesMutatedRequests) {
  uint64_t iters = 200000;
  if (const char* e = std::getenv("SKIFF_FUZZ_ITERS")) iters = std::strtoull(e, nullptr, 10);
  std::mt19937_64 rng(0x5eed);
  auto corpus = seeds();
  for (const auto& s : corpus) fuzz::run_one(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  for (uint64_t i = 0; i < iters; ++i) {
    std::string in = corpus[rng() % corpus.size()];
    int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      size_t pos = in.empty() ? 0 : rng() % in.size();
      switch (rng() % 5) {
        case 0:
          if (!in.empty()) in[pos] = static_cast<char>(in[pos] ^ (1 << (rng() % 8)));
          break;
        case 1:
          in.insert(pos, 1, "{}[]\",:0123456789-.etrufasln\\\x00\xff"[rng() % 32]);
          break;
        case 2:
          if (!in.empty()) in.erase(pos, 1 + rng() % 8);
          break;
        case 3: {  // splice a piece of another seed
          const std::string& other = corpus[rng() % corpus.size()];
          if (other.empty()) break;
          size_t from = rng() % other.size();
          in.insert(std::min(pos, in.size()), other.substr(from, 1 + rng() % 32));
          break;
        }
        case 4:
          if (in.size() >= 2) in[rng() % 2] = static_cast<char>(rng());
          break;
      }
    }
    fuzz::run_one(reinterpret_cast<const uint8_t*>(in.data()), in.size());
    if (!in.empty() && in.size() < 4096 && rng() % 64 == 0)
      corpus.push_back(in);  // keep some mutants
  }
}

}  // namespace
}  // namespace skiff::api

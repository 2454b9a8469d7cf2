// The request-handling fuzz body, shared by the libFuzzer target (clang)
// and the bounded GCC mutation driver (api_fuzz_test.cc): bytes -> method,
// path and body -> handle() against a fake VMM. Invariants: it returns, the
// status is a valid HTTP status, and an error has a JSON body with a code.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "api/api_handler.h"

namespace skiff::api::fuzz {

// A VMM that accepts everything (so a parsed config reaches create()).
class AcceptingVmm : public VmmControl {
 public:
  VmmResult<> create(const VmConfig&) override { return {}; }
  VmmResult<> boot() override { return {}; }
  VmmResult<> shutdown() override { return {}; }
  VmmResult<> reboot() override { return {}; }
  VmmResult<> pause() override { return {}; }
  VmmResult<> resume() override { return {}; }
  VmmResult<> power_button() override { return {}; }
  VmmResult<> delete_vm() override { return {}; }
  VmmResult<VmInfo> info() override { return VmInfo{}; }
  VmmResult<CounterMap> counters() override { return CounterMap{}; }
  void shutdown_vmm() override {}
};

// Input layout: byte 0 picks the method, byte 1 picks a known endpoint (or
// takes the path from the input up to a NUL), the rest is the body.
inline void run_one(const uint8_t* data, size_t size) {
  static constexpr const char* kMethods[] = {"GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", ""};
  if (size < 2) return;
  std::string_view method = kMethods[data[0] % std::size(kMethods)];
  auto eps = endpoints();
  std::string path;
  std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);
  if (data[1] < eps.size()) {
    path = std::string(kApiPrefix) + std::string(eps[data[1]].name);
  } else {
    size_t nul = rest.find('\0');
    path = std::string(rest.substr(0, nul));
    rest = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
  }
  AcceptingVmm vmm;
  ApiResponse r = handle(vmm, method, path, rest);
  if (r.status < 200 || r.status > 599) std::abort();
  if (r.status >= 400) {
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded() || !j.contains("code") || j["code"] != r.status) std::abort();
  }
}

}  // namespace skiff::api::fuzz

// The management API's request handling, independent of the HTTP library:
// (method, path, body) -> (status, JSON body). The paths and bodies are Cloud
// Hypervisor's (specs/cloud-hypervisor-api.yaml) under /api/v1/.
//
// Statuses: 200 with a JSON body (vmm.ping, vm.info, vm.counters), 204 for
// commands that succeeded; errors carry {"code": N, "message": "..."}:
//   400 malformed JSON, unknown field, impossible or unsupported values
//   404 unknown endpoint, or no VM created yet
//   405 wrong method for the endpoint (Allow says which), or the VM is in a
//       state where the command cannot run (pausing a paused VM)
//   409 vm.create while a VM exists
//   500 a host or KVM failure
//   501 an endpoint of the schema skiff does not implement yet (snapshot,
//       restore, migration, hotplug, ...), and vm.resize's desired_vcpus /
//       desired_ram (only desired_balloon is implemented)
// Nothing a client sends can throw out of handle(): it is the fuzzer's entry.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "vmm/vmm_service.h"

namespace skiff::api {

inline constexpr std::string_view kApiPrefix = "/api/v1/";

struct ApiResponse {
  int status = 200;
  std::string body;   // JSON, or empty for 204
  std::string allow;  // the Allow header for 405 on a wrong method
};

// What skiff answers for each path of the schema.
struct Endpoint {
  std::string_view name;    // "vm.pause"
  std::string_view method;  // "GET" or "PUT"
  bool implemented;         // false: 501 Not Implemented
};

// Every endpoint of the OpenAPI schema, in its order.
[[nodiscard]] std::span<const Endpoint> endpoints();

[[nodiscard]] ApiResponse handle(VmmControl& vmm, std::string_view method, std::string_view path,
                                 std::string_view body);

}  // namespace skiff::api

#include "api/api_handler.h"

#include <unistd.h>

#include <array>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "api/vm_config_json.h"
#include "base/version.h"

namespace skiff::api {

namespace {

using json = nlohmann::json;

constexpr std::array<Endpoint, 31> kEndpoints{{
    {"vmm.ping", "GET", true},
    {"vmm.shutdown", "PUT", true},
    {"vm.info", "GET", true},
    {"vm.counters", "GET", true},
    {"vm.create", "PUT", true},
    {"vm.delete", "PUT", true},
    {"vm.boot", "PUT", true},
    {"vm.pause", "PUT", true},
    {"vm.resume", "PUT", true},
    {"vm.shutdown", "PUT", true},
    {"vm.reboot", "PUT", true},
    {"vm.power-button", "PUT", true},
    {"vm.resize", "PUT", true},
    {"vm.resize-disk", "PUT", false},
    {"vm.resize-zone", "PUT", false},
    {"vm.add-device", "PUT", false},
    {"vm.remove-device", "PUT", false},
    {"vm.add-disk", "PUT", false},
    {"vm.add-fs", "PUT", false},
    {"vm.add-generic-vhost-user", "PUT", false},
    {"vm.add-pmem", "PUT", false},
    {"vm.add-net", "PUT", false},
    {"vm.add-vsock", "PUT", false},
    {"vm.add-vdpa", "PUT", false},
    {"vm.add-user-device", "PUT", false},
    {"vm.snapshot", "PUT", false},
    {"vm.coredump", "PUT", false},
    {"vm.nmi", "PUT", false},
    {"vm.restore", "PUT", false},
    {"vm.receive-migration", "PUT", false},
    {"vm.send-migration", "PUT", false},
}};

ApiResponse error_response(int status, std::string_view message) {
  json body{{"code", status}, {"message", message}};
  // Client bytes may be echoed in messages: replace invalid UTF-8 rather
  // than let the encoder refuse it.
  return ApiResponse{status, body.dump(-1, ' ', false, json::error_handler_t::replace), {}};
}

int status_for(VmmError::Kind kind) {
  switch (kind) {
    case VmmError::Kind::kNotCreated:
      return 404;
    case VmmError::Kind::kWrongState:
      return 405;
    case VmmError::Kind::kAlreadyExists:
      return 409;
    case VmmError::Kind::kInvalidConfig:
      return 400;
    case VmmError::Kind::kHost:
      return 500;
  }
  return 500;
}

ApiResponse no_content(const VmmResult<>& r) {
  if (!r) return error_response(status_for(r.error().kind), r.error().message);
  return ApiResponse{204, {}, {}};
}

ApiResponse ok_json(const json& j) {
  return ApiResponse{200, j.dump(-1, ' ', false, json::error_handler_t::replace), {}};
}

ApiResponse ping() {
  return ok_json(json{{"build_version", fmt::format("skiff v{}", kVersion)},
                      {"version", kVersion},
                      {"pid", static_cast<int64_t>(::getpid())},
                      {"features", json::array()}});
}

ApiResponse info(VmmControl& vmm) {
  auto r = vmm.info();
  if (!r) return error_response(status_for(r.error().kind), r.error().message);
  return ok_json(json{{"config", vm_config_to_json(r->config)},
                      {"state", vm_state_name(r->state)},
                      {"memory_actual_size", r->memory_actual_size}});
}

ApiResponse counters(VmmControl& vmm) {
  auto r = vmm.counters();
  if (!r) return error_response(status_for(r.error().kind), r.error().message);
  json j = json::object();
  for (const auto& [dev, values] : *r) {
    json d = json::object();
    for (const auto& [name, v] : values) d[name] = v;
    j[dev] = d;
  }
  return ok_json(j);
}

ApiResponse create(VmmControl& vmm, std::string_view body) {
  if (body.empty()) return error_response(400, "vm.create needs a VmConfig JSON body");
  auto config = parse_vm_config_text(body);
  if (!config) return error_response(400, config.error().what());
  return no_content(vmm.create(*config));
}

// VmResize: desired_balloon only. CPU and RAM hotplug are refused with
// 501 so a client can tell "not implemented" from "bad request".
ApiResponse resize(VmmControl& vmm, std::string_view body) {
  if (body.empty()) return error_response(400, "vm.resize needs a VmResize JSON body");
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return error_response(400, "vm.resize: malformed JSON");
  if (!j.is_object()) return error_response(400, "vm.resize: expected a VmResize JSON object");
  for (const auto& [key, value] : j.items()) {
    if (key != "desired_vcpus" && key != "desired_ram" && key != "desired_balloon")
      return error_response(400, fmt::format("vm.resize: unknown field '{}'", key));
    if (!value.is_null() && key != "desired_balloon")
      return error_response(
          501,
          fmt::format("vm.resize: {} is not implemented by skiff yet (only desired_balloon)", key));
  }
  auto it = j.find("desired_balloon");
  if (it == j.end() || it->is_null())
    return error_response(400, "vm.resize: desired_balloon is required (bytes)");
  if (!it->is_number_unsigned())
    return error_response(
        400, fmt::format("vm.resize: desired_balloon must be a non-negative integer, got {}",
                         it->dump(-1, ' ', false, json::error_handler_t::replace)));
  return no_content(vmm.resize_balloon(it->get<uint64_t>()));
}

ApiResponse dispatch(VmmControl& vmm, std::string_view name, std::string_view body) {
  if (name == "vmm.ping") return ping();
  if (name == "vmm.shutdown") {
    vmm.shutdown_vmm();
    return ApiResponse{204, {}, {}};
  }
  if (name == "vm.info") return info(vmm);
  if (name == "vm.counters") return counters(vmm);
  if (name == "vm.create") return create(vmm, body);
  if (name == "vm.delete") return no_content(vmm.delete_vm());
  if (name == "vm.boot") return no_content(vmm.boot());
  if (name == "vm.pause") return no_content(vmm.pause());
  if (name == "vm.resume") return no_content(vmm.resume());
  if (name == "vm.shutdown") return no_content(vmm.shutdown());
  if (name == "vm.reboot") return no_content(vmm.reboot());
  if (name == "vm.power-button") return no_content(vmm.power_button());
  if (name == "vm.resize") return resize(vmm, body);
  return error_response(500, fmt::format("{} is listed as implemented but has no handler", name));
}

}  // namespace

std::span<const Endpoint> endpoints() {
  return kEndpoints;
}

ApiResponse handle(VmmControl& vmm, std::string_view method, std::string_view path,
                   std::string_view body) {
  try {
    if (!path.starts_with(kApiPrefix))
      return error_response(
          404, fmt::format("unknown endpoint '{}' (the API is under {})", path, kApiPrefix));
    std::string_view name = path.substr(kApiPrefix.size());
    const Endpoint* ep = nullptr;
    for (const Endpoint& e : kEndpoints)
      if (e.name == name) ep = &e;
    if (!ep) return error_response(404, fmt::format("unknown endpoint '{}'", path));
    // HEAD is a GET without the body (RFC 9110 §9.3.2).
    bool method_ok = method == ep->method || (method == "HEAD" && ep->method == "GET");
    if (!method_ok) {
      ApiResponse r = error_response(
          405, fmt::format("{} does not accept {}; use {}", ep->name, method, ep->method));
      r.allow = std::string(ep->method);
      return r;
    }
    if (!ep->implemented)
      return error_response(501, fmt::format("{} is not implemented by skiff yet", ep->name));
    return dispatch(vmm, ep->name, body);
  } catch (const std::exception& e) {
    // Nothing should throw here (the JSON parser's exceptions are caught
    // where they happen); this keeps a bug a 500, not a dead API thread.
    return error_response(500, fmt::format("internal error: {}", e.what()));
  }
}

}  // namespace skiff::api

// skiffctl: a client for a running skiff's REST API (like ch-remote).
//
//   skiffctl --api-socket PATH [--json] COMMAND [ARG]
//   skiffctl --api-socket PATH resize --balloon SIZE
//
// Human-readable output by default, the server's JSON with --json. Exit
// status: 0 success, 1 the server refused (its message is printed), 2 usage,
// 3 cannot reach the server.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "api/http_io.h"
#include "base/version.h"
#include "cli/kv_options.h"

namespace {

using json = nlohmann::json;

constexpr int kExitRefused = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

struct Command {
  const char* name;
  const char* method;
  const char* endpoint;
  const char* help;
};

constexpr Command kCommands[] = {
    {"ping", "GET", "vmm.ping", "VMM version and pid"},
    {"info", "GET", "vm.info", "VM state and configuration"},
    {"counters", "GET", "vm.counters", "per-vCPU KVM exits by reason, device I/O counters"},
    {"create", "PUT", "vm.create", "create a VM from a VmConfig JSON file (argument: FILE)"},
    {"boot", "PUT", "vm.boot", "boot the created VM"},
    {"pause", "PUT", "vm.pause", "pause every vCPU"},
    {"resume", "PUT", "vm.resume", "resume a paused VM"},
    {"shutdown", "PUT", "vm.shutdown", "stop the VM (state Shutdown; boot starts it again)"},
    {"reboot", "PUT", "vm.reboot", "reset the VM"},
    {"power-button", "PUT", "vm.power-button", "press the ACPI power button"},
    {"delete", "PUT", "vm.delete", "stop and forget the VM"},
    {"resize", "PUT", "vm.resize", "set the balloon's target (--balloon SIZE: RAM to take back)"},
    {"shutdown-vmm", "PUT", "vmm.shutdown", "stop the VM and end the skiff process"},
};

std::string human_size(uint64_t bytes) {
  if (bytes % (1ull << 30) == 0) return fmt::format("{} GiB", bytes >> 30);
  if (bytes % (1ull << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  return fmt::format("{} bytes", bytes);
}

// Human rendering of a 200 body; falls back to the JSON when the shape is unexpected.
void print_human(const std::string& cmd, const json& j) {
  if (cmd == "ping" && j.is_object()) {
    fmt::print("skiff {} (pid {})\n", j.value("version", "?"), j.value("pid", 0));
    return;
  }
  if (cmd == "info" && j.is_object() && j.contains("config")) {
    const json& c = j["config"];
    fmt::print("state:   {}\n", j.value("state", "?"));
    if (c.contains("cpus")) fmt::print("vcpus:   {}\n", c["cpus"].value("boot_vcpus", 0));
    fmt::print("memory:  {}\n", human_size(j.value("memory_actual_size", uint64_t{0})));
    if (c.contains("payload")) {
      fmt::print("kernel:  {}\n", c["payload"].value("kernel", ""));
      if (c["payload"].contains("cmdline"))
        fmt::print("cmdline: {}\n", c["payload"].value("cmdline", ""));
      if (c["payload"].contains("initramfs"))
        fmt::print("initrd:  {}\n", c["payload"].value("initramfs", ""));
    }
    if (c.contains("serial")) {
      fmt::print("serial:  {}{}\n", c["serial"].value("mode", "?"),
                 c["serial"].contains("file") ? " " + c["serial"].value("file", "") : "");
    }
    return;
  }
  if (cmd == "counters" && j.is_object()) {
    for (const auto& [dev, values] : j.items()) {
      std::string line = dev + ":";
      if (values.is_object())
        for (const auto& [k, v] : values.items()) line += fmt::format(" {}={}", k, v.dump());
      fmt::print("{}\n", line);
    }
    return;
  }
  fmt::print("{}\n", j.dump(2));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"skiffctl: control a running skiff through its API socket", "skiffctl"};
  std::string socket, command, arg, balloon;
  bool as_json = false;
  app.set_version_flag("--version", fmt::format("skiffctl v{}", skiff::kVersion));
  app.add_option("--api-socket", socket, "skiff's API socket (skiff --api-socket path=PATH)")
      ->required()
      ->type_name("PATH");
  app.add_option("--balloon", balloon,
                 "For resize: the balloon's new size (K/M/G suffixes; 0 deflates it all)")
      ->type_name("SIZE");
  app.add_flag("--json", as_json, "Print the server's JSON instead of the human-readable form");
  std::string commands = "Commands:\n";
  for (const auto& c : kCommands) commands += fmt::format("  {:<13} {}\n", c.name, c.help);
  commands +=
      "\nExit status: 0 ok, 1 the server refused (its message is printed), 2 usage, 3 cannot reach "
      "skiff.";
  app.footer(commands);
  app.add_option("command", command, "What to do (see Commands)")->required();
  app.add_option("arg", arg, "FILE.json for create");
  CLI11_PARSE(app, argc, argv);

  const Command* cmd = nullptr;
  for (const auto& c : kCommands)
    if (command == c.name) cmd = &c;
  if (!cmd) {
    fmt::print(stderr, "skiffctl: unknown command '{}' (see --help)\n", command);
    return kExitUsage;
  }
  std::string body;
  if (command == "create") {
    if (arg.empty()) {
      fmt::print(stderr, "skiffctl: create needs a VmConfig JSON file\n");
      return kExitUsage;
    }
    std::ifstream f(arg);
    if (!f) {
      fmt::print(stderr, "skiffctl: cannot read '{}'\n", arg);
      return kExitUsage;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    body = ss.str();
  } else if (!arg.empty()) {
    fmt::print(stderr, "skiffctl: {} takes no argument\n", command);
    return kExitUsage;
  }
  if (command == "resize") {
    if (balloon.empty()) {
      fmt::print(stderr, "skiffctl: resize needs --balloon SIZE\n");
      return kExitUsage;
    }
    auto bytes = skiff::cli::parse_size("--balloon", balloon);
    if (!bytes) {
      fmt::print(stderr, "skiffctl: {}\n", bytes.error().what());
      return kExitUsage;
    }
    body = json{{"desired_balloon", *bytes}}.dump();
  } else if (!balloon.empty()) {
    fmt::print(stderr, "skiffctl: --balloon goes with resize only\n");
    return kExitUsage;
  }

  std::string path = fmt::format("/api/v1/{}", cmd->endpoint);
  auto res = [&]() -> skiff::Result<skiff::api::HttpResponse> {
    skiff::Fd fd = SKIFF_TRY(skiff::api::connect_unix(socket));
    skiff::api::HttpConnection conn(fd.get());
    SKIFF_TRY_VOID(conn.write_request(cmd->method, path, body));
    // vm.shutdown waits for the vCPUs to stop; vm.boot loads the kernel.
    return conn.read_response(std::chrono::seconds(60));
  }();
  if (!res) {
    fmt::print(stderr, "skiffctl: cannot reach skiff at '{}': {}\n", socket, res.error().what());
    return kExitUnreachable;
  }
  if (res->status >= 400) {
    std::string message = res->body;
    json j = json::parse(res->body, nullptr, false);
    if (j.is_object() && j.contains("message") && j["message"].is_string())
      message = j["message"].get<std::string>();
    if (as_json)
      fmt::print("{}\n", res->body);
    else
      fmt::print(stderr, "skiffctl: {}: {} (HTTP {})\n", cmd->endpoint, message, res->status);
    return kExitRefused;
  }
  if (res->body.empty()) {
    if (!as_json) fmt::print("{}: ok\n", cmd->endpoint);
    return 0;
  }
  json j = json::parse(res->body, nullptr, false);
  if (as_json || j.is_discarded())
    fmt::print("{}\n", res->body);
  else
    print_human(command, j);
  return 0;
}

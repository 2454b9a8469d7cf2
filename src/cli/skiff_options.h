// The `skiff` command line (Cloud Hypervisor's option conventions) turned
// into a VmConfig plus process settings.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/result.h"
#include "vmm/config.h"

namespace skiff::cli {

// A Unix socket given as path=PATH or fd=N (inherited from the parent).
struct SocketSpec {
  std::string path;
  int fd = -1;
};

struct SkiffArgs {
  VmConfig vm;
  bool has_kernel = false;                  // --kernel given: create and boot at start
  std::optional<SocketSpec> api_socket;     // --api-socket
  std::optional<SocketSpec> event_monitor;  // --event-monitor
  std::string log_file;
  int verbosity = 0;
};

// What parsing decided: run with these arguments, or print this text and exit
// with this status (--help, --version, or a usage error).
struct EarlyExit {
  int status;
  std::string text;  // printed to stdout when status == 0, else stderr
};

[[nodiscard]] std::variant<SkiffArgs, EarlyExit> parse_skiff_args(std::vector<std::string> argv);

}  // namespace skiff::cli

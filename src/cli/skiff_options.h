// The `skiff` command line (Cloud Hypervisor's option conventions) turned
// into a VmConfig plus process settings.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "base/result.h"
#include "vmm/config.h"

namespace skiff::cli {

struct SkiffArgs {
  VmConfig vm;
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

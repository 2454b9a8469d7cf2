// Logging: spdlog behind a thin facade so the sink (stderr or --log-file) and
// verbosity are set once at start-up. Hot paths do not log per request.
#pragma once

#include <chrono>
#include <string>

#include <spdlog/spdlog.h>

#include "base/result.h"

namespace skiff {

// verbosity: 0 = warnings and errors, 1 = info, 2 = debug, 3+ = trace.
[[nodiscard]] Result<> init_logging(int verbosity, const std::string& log_file);

// Time since the process started (used by the port 0x80 boot-time marker).
std::chrono::nanoseconds since_process_start();

}  // namespace skiff

#define LOG_TRACE(...) SPDLOG_TRACE(__VA_ARGS__)
#define LOG_DEBUG(...) spdlog::debug(__VA_ARGS__)
#define LOG_INFO(...) spdlog::info(__VA_ARGS__)
#define LOG_WARN(...) spdlog::warn(__VA_ARGS__)
#define LOG_ERROR(...) spdlog::error(__VA_ARGS__)

// Logging: spdlog behind a thin facade so the sink (stderr or --log-file) and
// verbosity are set once at start-up. Hot paths do not log per request.
#pragma once

#include <chrono>
#include <string>

#include <fmt/core.h>

#include "base/result.h"

namespace skiff {

// verbosity: 0 = warnings and errors, 1 = info, 2 = debug, 3+ = trace.
[[nodiscard]] Result<> init_logging(int verbosity, const std::string& log_file);

// Time since the process started (used by the port 0x80 boot-time marker).
std::chrono::nanoseconds since_process_start();

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kOff };

// Whether a message at `level` is written anywhere.
[[nodiscard]] bool log_enabled(LogLevel level);
// The least level written from now on (kOff: nothing; tests quieten the
// warnings they provoke on purpose).
void set_log_level(LogLevel level);
// Formats and writes one message. Out of line, so the formatting and
// spdlog's machinery are compiled once (log.cc), not at every call site:
// spdlog's templates at each call were most of the build time of the files
// that log.
void log_vformat(LogLevel level, fmt::string_view format, fmt::format_args args);

// Checks the format against the arguments at compile time, as fmt::format
// does.
template <typename... Args>
void log_message(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  if (log_enabled(level)) log_vformat(level, format, fmt::make_format_args(args...));
}

}  // namespace skiff

#define LOG_TRACE(...) ::skiff::log_message(::skiff::LogLevel::kTrace, __VA_ARGS__)
#define LOG_DEBUG(...) ::skiff::log_message(::skiff::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) ::skiff::log_message(::skiff::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) ::skiff::log_message(::skiff::LogLevel::kWarn, __VA_ARGS__)
#define LOG_ERROR(...) ::skiff::log_message(::skiff::LogLevel::kError, __VA_ARGS__)

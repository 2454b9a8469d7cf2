#include "base/log.h"

#include <fmt/format.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <time.h>

namespace skiff {

namespace {
std::chrono::nanoseconds process_start_time() {
  // CLOCK_MONOTONIC value at exec is not exposed; /proc/self/stat starttime
  // is in clock ticks (10 ms), too coarse for boot timing. The first call
  // happens from main() before anything else, which is within microseconds.
  static const auto start = std::chrono::steady_clock::now().time_since_epoch();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(start);
}
spdlog::level::level_enum to_spdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return spdlog::level::trace;
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
    case LogLevel::kOff:
      break;
  }
  return spdlog::level::off;
}
}  // namespace

bool log_enabled(LogLevel level) {
  return spdlog::default_logger_raw()->should_log(to_spdlog(level));
}

void set_log_level(LogLevel level) {
  spdlog::set_level(to_spdlog(level));
}

void log_vformat(LogLevel level, fmt::string_view format, fmt::format_args args) {
  fmt::memory_buffer text;
  spdlog::string_view_t message;
  try {
    fmt::vformat_to(fmt::appender(text), format, args);
    message = spdlog::string_view_t(text.data(), text.size());
  } catch (const std::exception&) {
    // The format was checked at compile time; only running out of memory
    // gets here. Log the unformatted format rather than nothing (needing
    // no memory to do so).
    message = spdlog::string_view_t(format.data(), format.size());
  }
  spdlog::default_logger_raw()->log(to_spdlog(level), message);
}

std::chrono::nanoseconds since_process_start() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch()) -
         process_start_time();
}

Result<> init_logging(int verbosity, const std::string& log_file) {
  (void)process_start_time();
  std::shared_ptr<spdlog::logger> logger;
  try {
    if (log_file.empty()) {
      logger = spdlog::stderr_logger_mt("skiff");
    } else {
      logger = spdlog::basic_logger_mt("skiff", log_file, /*truncate=*/false);
    }
  } catch (const spdlog::spdlog_ex& e) {
    return fail("cannot open log file '{}': {}", log_file, e.what());
  }
  spdlog::level::level_enum level = spdlog::level::warn;
  if (verbosity == 1) level = spdlog::level::info;
  if (verbosity == 2) level = spdlog::level::debug;
  if (verbosity >= 3) level = spdlog::level::trace;
  logger->set_level(level);
  logger->set_pattern("skiff: [%l] %v");
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  return {};
}

}  // namespace skiff

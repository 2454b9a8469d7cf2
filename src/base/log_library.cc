// The compiled parts of fmt and spdlog, built into skiff instead of taken
// from Debian's libfmt.so and libspdlog.so. The two shared libraries (and
// the libstdc++.so they pull in) were two fifths of an idle skiff's
// resident memory: a process maps and faults in whole pages of every
// library it loads, while a static link keeps only the functions skiff
// calls, next to its own code. Debian ships the libraries' implementation
// headers (the *-inl.h files, for their header-only mode), so this one
// translation unit is their build: every other file sees the declarations
// only (SPDLOG_COMPILED_LIB, no FMT_HEADER_ONLY; see base/CMakeLists.txt).
#include <mutex>

#include <fmt/format-inl.h>
#include <spdlog/common-inl.h>
#include <spdlog/details/backtracer-inl.h>
#include <spdlog/details/file_helper-inl.h>
#include <spdlog/details/log_msg-inl.h>
#include <spdlog/details/log_msg_buffer-inl.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/details/os-inl.h>
#include <spdlog/details/periodic_worker-inl.h>
#include <spdlog/details/registry-inl.h>
#include <spdlog/logger-inl.h>
#include <spdlog/pattern_formatter-inl.h>
#include <spdlog/sinks/ansicolor_sink-inl.h>
#include <spdlog/sinks/base_sink-inl.h>
#include <spdlog/sinks/basic_file_sink-inl.h>
#include <spdlog/sinks/sink-inl.h>
#include <spdlog/sinks/stdout_sinks-inl.h>
#include <spdlog/spdlog-inl.h>

// The locale-dependent formatting fmt declares in format.h and keeps in
// its library.
template fmt::detail::thousands_sep_result<char> fmt::detail::thousands_sep_impl<char>(
    fmt::detail::locale_ref);
template char fmt::detail::decimal_point_impl<char>(fmt::detail::locale_ref);

// The sinks and factories base/log.cc uses, and the colour console sink of
// spdlog's default logger (in place until init_logging replaces it).
template class spdlog::sinks::ansicolor_sink<spdlog::details::console_mutex>;
template class spdlog::sinks::ansicolor_stdout_sink<spdlog::details::console_mutex>;
template class spdlog::sinks::base_sink<std::mutex>;
template class spdlog::sinks::basic_file_sink<std::mutex>;
template class spdlog::sinks::stdout_sink_base<spdlog::details::console_mutex>;
template class spdlog::sinks::stderr_sink<spdlog::details::console_mutex>;
template std::shared_ptr<spdlog::logger> spdlog::stderr_logger_mt<spdlog::synchronous_factory>(
    const std::string& logger_name);

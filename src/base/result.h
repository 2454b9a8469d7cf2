// Errors are values (STYLE.md §7): every fallible call returns Result<T>.
// An Error carries a message that says what failed, on which object, and
// what to do, plus the errno that caused it (0 when none).
#pragma once

#include <cerrno>
#include <cstring>
#include <expected>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace skiff {

struct Error {
  std::string message;
  int errnum = 0;

  // "message: strerror(errnum)" when errnum is set.
  [[nodiscard]] std::string what() const {
    if (errnum == 0) return message;
    return fmt::format("{}: {}", message, std::strerror(errnum));
  }
};

template <typename T = void>
using Result = std::expected<T, Error>;

// Builds an Error from a format string.
template <typename... Args>
[[nodiscard]] std::unexpected<Error> fail(fmt::format_string<Args...> f, Args&&... args) {
  return std::unexpected(Error{fmt::format(f, std::forward<Args>(args)...), 0});
}

// Builds an Error that records the current errno.
template <typename... Args>
[[nodiscard]] std::unexpected<Error> fail_errno(fmt::format_string<Args...> f, Args&&... args) {
  int e = errno;
  return std::unexpected(Error{fmt::format(f, std::forward<Args>(args)...), e});
}

// Same, with an explicit errno (e.g. a negative io_uring result).
template <typename... Args>
[[nodiscard]] std::unexpected<Error> fail_with(int errnum, fmt::format_string<Args...> f,
                                               Args&&... args) {
  return std::unexpected(Error{fmt::format(f, std::forward<Args>(args)...), errnum});
}

// Prefixes context to an error as it travels up: "loading kernel: ...".
inline std::unexpected<Error> context(const Error& e, std::string_view what) {
  return std::unexpected(Error{fmt::format("{}: {}", what, e.message), e.errnum});
}

}  // namespace skiff

// TRY(expr): evaluates a Result; on error returns it from the enclosing
// function. GCC statement expression, used the way Rust uses `?`.
#define SKIFF_TRY(expr)                                                  \
  ({                                                                     \
    auto&& skiff_try_r_ = (expr);                                        \
    if (!skiff_try_r_) return std::unexpected(std::move(skiff_try_r_.error())); \
    std::move(*skiff_try_r_);                                            \
  })

#define SKIFF_TRY_VOID(expr)                                             \
  do {                                                                   \
    auto&& skiff_try_r_ = (expr);                                        \
    if (!skiff_try_r_) return std::unexpected(std::move(skiff_try_r_.error())); \
  } while (0)

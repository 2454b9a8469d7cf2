// An owned file descriptor (RAII, move-only), and small wrappers for the
// syscalls every layer needs on it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "base/result.h"

namespace skiff {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }

  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// open(2) with O_CLOEXEC; the error names the path.
[[nodiscard]] Result<Fd> open_file(const std::string& path, int flags, unsigned mode = 0);

// Reads a whole file into memory; the error names the path.
[[nodiscard]] Result<std::string> read_file(const std::string& path);

// Writes all of data, retrying on EINTR and short writes.
[[nodiscard]] Result<> write_all(int fd, std::span<const uint8_t> data);

// An eventfd (EFD_CLOEXEC), used for ioeventfd/irqfd and thread wake-ups.
class EventFd {
 public:
  static Result<EventFd> create(unsigned initial = 0, int flags = 0);
  [[nodiscard]] int get() const { return fd_.get(); }
  void signal() const;
  // Returns the counter and resets it; 0 if it was not signalled (non-blocking fds).
  uint64_t consume() const;

 private:
  Fd fd_;
};

}  // namespace skiff

#include "base/fd.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

namespace skiff {

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Result<Fd> open_file(const std::string& path, int flags, unsigned mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return fail_errno("cannot open '{}'", path);
  return Fd(fd);
}

Result<std::string> read_file(const std::string& path) {
  Fd fd = SKIFF_TRY(open_file(path, O_RDONLY));
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) return fail_errno("cannot stat '{}'", path);
  if (S_ISDIR(st.st_mode)) return fail("'{}' is a directory, not a file", path);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("cannot read '{}'", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<> write_all(int fd, std::span<const uint8_t> data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("write to fd {} failed", fd);
    }
    data = data.subspan(static_cast<size_t>(n));
  }
  return {};
}

Result<EventFd> EventFd::create(unsigned initial, int flags) {
  int fd = ::eventfd(initial, EFD_CLOEXEC | flags);
  if (fd < 0) return fail_errno("eventfd");
  EventFd e;
  e.fd_.reset(fd);
  return e;
}

void EventFd::signal() const {
  uint64_t one = 1;
  // A full counter (EAGAIN) already means "signalled"; nothing to do.
  [[maybe_unused]] ssize_t n = ::write(fd_.get(), &one, sizeof one);
}

uint64_t EventFd::consume() const {
  uint64_t v = 0;
  if (::read(fd_.get(), &v, sizeof v) != sizeof v) return 0;
  return v;
}

}  // namespace skiff

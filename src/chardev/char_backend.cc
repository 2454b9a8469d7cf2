#include "chardev/char_backend.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/log.h"

namespace skiff {

Result<CharBackendSpec> parse_char_backend_spec(std::string_view value, std::string_view option) {
  if (value == "tty") return CharBackendSpec{CharBackendMode::kTty, {}};
  if (value == "off") return CharBackendSpec{CharBackendMode::kOff, {}};
  if (value == "pty") return CharBackendSpec{CharBackendMode::kPty, {}};
  constexpr std::string_view kFilePrefix = "file=";
  if (value.starts_with(kFilePrefix)) {
    std::string_view path = value.substr(kFilePrefix.size());
    if (path.empty()) return fail("{}: 'file=' needs a path (e.g. file=/tmp/serial.log)", option);
    return CharBackendSpec{CharBackendMode::kFile, std::string(path)};
  }
  return fail("{}: unknown mode '{}' (expected tty, off, pty or file=PATH)", option, value);
}

// --- raw terminal -----------------------------------------------------------

namespace {
// The terminal a live RawTerminal changed, for the signal-handler path. The
// termios copy is written before the fd is published (release) and read
// after it is seen (acquire), so the handler never sees a half-written copy.
std::atomic<int> g_raw_fd{-1};
termios g_raw_saved{};
}  // namespace

Result<std::unique_ptr<RawTerminal>> RawTerminal::enter(int fd) {
  termios saved{};
  if (::tcgetattr(fd, &saved) < 0) return fail_errno("cannot read terminal settings of fd {}", fd);
  termios raw = saved;
  ::cfmakeraw(&raw);
  // cfmakeraw already clears ISIG (^C goes to the guest). Keep output
  // post-processing as QEMU's stdio backend does, so skiff's own log lines
  // on the same terminal still start at column 0.
  raw.c_oflag = saved.c_oflag;
  if (::tcsetattr(fd, TCSANOW, &raw) < 0) return fail_errno("cannot put fd {} in raw mode", fd);
  g_raw_saved = saved;
  g_raw_fd.store(fd, std::memory_order_release);
  return std::unique_ptr<RawTerminal>(new RawTerminal(fd, saved));
}

RawTerminal::~RawTerminal() {
  g_raw_fd.store(-1, std::memory_order_release);
  ::tcsetattr(fd_, TCSANOW, &saved_);
}

void restore_terminal_from_signal() {
  // tcsetattr is async-signal-safe (POSIX.1-2017 §2.4.3).
  int fd = g_raw_fd.exchange(-1, std::memory_order_acquire);
  if (fd >= 0) ::tcsetattr(fd, TCSANOW, &g_raw_saved);
}

// --- back ends ----------------------------------------------------------------

namespace {

Result<Fd> open_pty(std::string* slave_path) {
  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return fail_errno("cannot open a pseudo-terminal (posix_openpt)");
  Fd fd(master);
  if (::grantpt(fd.get()) < 0) return fail_errno("grantpt on the new pty failed");
  if (::unlockpt(fd.get()) < 0) return fail_errno("unlockpt on the new pty failed");
  char name[128];
  if (int e = ::ptsname_r(fd.get(), name, sizeof name); e != 0)
    return fail_with(e, "cannot get the name of the new pty");
  *slave_path = name;
  // Never let a vCPU block on a pty nobody reads.
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0)
    return fail_errno("cannot make pty {} non-blocking", *slave_path);
  return fd;
}

}  // namespace

Result<std::unique_ptr<CharBackend>> CharBackend::open(const CharBackendSpec& spec,
                                                       std::string_view name) {
  std::unique_ptr<CharBackend> b(new CharBackend());
  b->mode_ = spec.mode;
  b->name_ = std::string(name);
  switch (spec.mode) {
    case CharBackendMode::kOff:
      break;
    case CharBackendMode::kTty:
      b->output_fd_ = STDOUT_FILENO;
      b->input_fd_ = STDIN_FILENO;
      if (::isatty(STDIN_FILENO)) {
        auto raw = RawTerminal::enter(STDIN_FILENO);
        if (!raw) return context(raw.error(), fmt::format("{}: tty mode", name));
        b->raw_ = std::move(*raw);
      }
      break;
    case CharBackendMode::kFile: {
      auto fd = open_file(spec.path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (!fd) return context(fd.error(), fmt::format("{}: file backend", name));
      b->owned_ = std::move(*fd);
      b->output_fd_ = b->owned_.get();
      break;
    }
    case CharBackendMode::kPty: {
      auto master = open_pty(&b->pty_path_);
      if (!master) return context(master.error(), fmt::format("{}: pty backend", name));
      b->owned_ = std::move(*master);
      // Raw mode on the pty (termios calls on the master act on the slave
      // side): the guest's bytes pass through unchanged in both directions.
      termios tio{};
      if (::tcgetattr(b->owned_.get(), &tio) < 0)
        return fail_errno("{}: cannot read settings of pty {}", name, b->pty_path_);
      ::cfmakeraw(&tio);
      if (::tcsetattr(b->owned_.get(), TCSANOW, &tio) < 0)
        return fail_errno("{}: cannot put pty {} in raw mode", name, b->pty_path_);
      // Holding the slave open keeps the master from reporting a hang-up
      // (POLLHUP, EIO) while no terminal program is attached, and lets the
      // start of the guest's output wait in the pty buffer for the first one.
      auto slave = open_file(b->pty_path_, O_RDWR | O_NOCTTY | O_NONBLOCK);
      if (!slave) return context(slave.error(), fmt::format("{}: pty backend", name));
      b->pty_slave_ = std::move(*slave);
      b->output_fd_ = b->owned_.get();
      b->input_fd_ = b->owned_.get();
      LOG_INFO("{}: pty at {}", name, b->pty_path_);
      break;
    }
  }
  return b;
}

CharBackend::~CharBackend() = default;

void CharBackend::write(std::span<const uint8_t> data) {
  if (output_fd_ < 0) return;
  while (!data.empty()) {
    ssize_t n = ::write(output_fd_, data.data(), data.size());
    if (n >= 0) {
      data = data.subspan(static_cast<size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    int e = errno;
    dropped_.fetch_add(data.size(), std::memory_order_relaxed);
    if (!write_error_logged_.exchange(true)) {
      if (e == EAGAIN) {
        LOG_WARN("{}: output is not being read (pty {} full); dropping guest output", name_,
                 pty_path_);
      } else {
        LOG_WARN("{}: cannot write guest output: {}; dropping it", name_, std::strerror(e));
      }
    }
    return;
  }
}

}  // namespace skiff

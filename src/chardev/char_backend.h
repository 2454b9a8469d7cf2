// Host character back ends for guest consoles: where a UART's (and later a
// virtio-console's) bytes go on the host and where its input comes from.
//
// Lives in its own layer (skiff_chardev, depends on base only), beside
// block/ and net/: it is a host backend, not a device, and both the legacy
// devices and virtio-console front ends are wired to it by the vmm layer.
//
// Modes, as accepted by --serial (and --console):
//   tty        output to stdout, input from stdin; a terminal stdin is put in
//              raw mode (no echo, no line editing, ISIG off so ^C reaches the
//              guest) and restored when the backend is destroyed, or from a
//              signal handler through restore_terminal_from_signal().
//   pty        a new pseudo-terminal in raw mode; its slave path is logged
//              ("serial: pty at /dev/pts/N") for `screen`/`minicom`.
//   file=PATH  output to PATH (created or truncated); no input.
//   off        output discarded; no input.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <termios.h>

#include "base/fd.h"
#include "base/result.h"

namespace skiff {

enum class CharBackendMode { kTty, kOff, kPty, kFile };

struct CharBackendSpec {
  CharBackendMode mode = CharBackendMode::kOff;
  std::string path;  // kFile only
};

// Parses "tty", "off", "pty" or "file=PATH". option names the flag in
// errors: "--serial: unknown mode 'foo' (expected tty, off, pty or file=PATH)".
[[nodiscard]] Result<CharBackendSpec> parse_char_backend_spec(std::string_view value,
                                                              std::string_view option = "--serial");

// Puts a terminal in raw mode and restores its settings on destruction.
// At most one is active per process (it is registered for
// restore_terminal_from_signal()).
class RawTerminal {
 public:
  static Result<std::unique_ptr<RawTerminal>> enter(int fd);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  RawTerminal(int fd, const termios& saved) : fd_(fd), saved_(saved) {}
  int fd_;
  termios saved_;
};

// Async-signal-safe: restores the terminal a live RawTerminal changed. The
// main's SIGTERM/SIGINT handler calls it before exiting.
void restore_terminal_from_signal();

class CharBackend {
 public:
  // name labels log lines ("serial", "console").
  static Result<std::unique_ptr<CharBackend>> open(const CharBackendSpec& spec,
                                                   std::string_view name = "serial");
  ~CharBackend();
  CharBackend(const CharBackend&) = delete;
  CharBackend& operator=(const CharBackend&) = delete;

  // Guest output. Never blocks on a pty nobody reads (bytes beyond the pty's
  // buffer are dropped and counted); errors are logged once, not returned,
  // because the caller is a vCPU thread that cannot do anything about them.
  // Safe to call from several threads.
  void write(std::span<const uint8_t> data);

  // The fd to poll for guest input, or -1 when the mode has none.
  [[nodiscard]] int input_fd() const { return input_fd_; }
  // The pty slave path (kPty only).
  [[nodiscard]] const std::string& pty_path() const { return pty_path_; }
  [[nodiscard]] CharBackendMode mode() const { return mode_; }
  [[nodiscard]] uint64_t dropped_output_bytes() const { return dropped_.load(); }

 private:
  CharBackend() = default;

  CharBackendMode mode_ = CharBackendMode::kOff;
  std::string name_;
  Fd owned_;            // the file or the pty master
  Fd pty_slave_;        // kept open so the master never sees a hang-up
  int output_fd_ = -1;  // stdout or owned_; -1 for off
  int input_fd_ = -1;   // stdin or the pty master; -1 for file/off
  std::string pty_path_;
  std::unique_ptr<RawTerminal> raw_;
  std::atomic<uint64_t> dropped_{0};
  std::atomic<bool> write_error_logged_{false};
};

}  // namespace skiff

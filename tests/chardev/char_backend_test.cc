#include "chardev/char_backend.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include "base/fd.h"

namespace skiff {
namespace {

std::span<const uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Reads what arrives on fd within timeout_ms, up to want bytes.
std::string read_some(int fd, size_t want, int timeout_ms = 2000) {
  std::string got;
  while (got.size() < want) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) break;
    char buf[256];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "chardev-XXXXXX";
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() {
    if (!path_.empty()) std::system(("rm -rf '" + path_ + "'").c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(ParseCharBackendSpec, AcceptsEveryMode) {
  EXPECT_EQ(parse_char_backend_spec("tty")->mode, CharBackendMode::kTty);
  EXPECT_EQ(parse_char_backend_spec("off")->mode, CharBackendMode::kOff);
  EXPECT_EQ(parse_char_backend_spec("pty")->mode, CharBackendMode::kPty);
  auto f = parse_char_backend_spec("file=/tmp/x");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->mode, CharBackendMode::kFile);
  EXPECT_EQ(f->path, "/tmp/x");
}

TEST(ParseCharBackendSpec, KeepsEqualsSignsInsideThePath) {
  auto f = parse_char_backend_spec("file=/tmp/a=b");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->path, "/tmp/a=b");
}

TEST(ParseCharBackendSpec, RejectsUnknownModeNamingIt) {
  auto r = parse_char_backend_spec("foo");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message,
            "--serial: unknown mode 'foo' (expected tty, off, pty or file=PATH)");
}

TEST(ParseCharBackendSpec, NamesTheOptionItWasGiven) {
  auto r = parse_char_backend_spec("stdio", "--console");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message,
            "--console: unknown mode 'stdio' (expected tty, off, pty or file=PATH)");
}

TEST(ParseCharBackendSpec, RejectsNearMisses) {
  for (std::string_view bad : {"", "TTY", "tty ", "file", "file:/tmp/x", "pty=1", "off="})
    EXPECT_FALSE(parse_char_backend_spec(bad)) << "'" << bad << "'";
}

TEST(ParseCharBackendSpec, RejectsFileWithoutPath) {
  auto r = parse_char_backend_spec("file=");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("needs a path"), std::string::npos) << r.error().message;
}

TEST(CharBackend, FileBackendWritesBytesAndHasNoInput) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  std::string path = dir.path() + "/serial.log";
  {
    auto b = CharBackend::open({CharBackendMode::kFile, path});
    ASSERT_TRUE(b) << b.error().what();
    EXPECT_EQ((*b)->input_fd(), -1);
    (*b)->write(bytes("hello "));
    (*b)->write(bytes("world\r\n\xff"));
  }
  auto content = read_file(path);
  ASSERT_TRUE(content);
  EXPECT_EQ(*content, "hello world\r\n\xff");
}

TEST(CharBackend, FileBackendTruncatesAnOldLog) {
  TempDir dir;
  std::string path = dir.path() + "/serial.log";
  {
    Fd fd = *open_file(path, O_WRONLY | O_CREAT, 0644);
    ASSERT_TRUE(write_all(fd.get(), bytes("old contents that are long")));
  }
  {
    auto b = CharBackend::open({CharBackendMode::kFile, path});
    ASSERT_TRUE(b);
    (*b)->write(bytes("new"));
  }
  EXPECT_EQ(*read_file(path), "new");
}

TEST(CharBackend, FileBackendErrorNamesThePath) {
  auto b = CharBackend::open({CharBackendMode::kFile, "/nonexistent-dir/serial.log"});
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().what().find("/nonexistent-dir/serial.log"), std::string::npos)
      << b.error().what();
}

TEST(CharBackend, OffBackendDiscardsOutputAndHasNoInput) {
  auto b = CharBackend::open({CharBackendMode::kOff, {}});
  ASSERT_TRUE(b);
  EXPECT_EQ((*b)->input_fd(), -1);
  (*b)->write(bytes("ignored"));
  EXPECT_EQ((*b)->dropped_output_bytes(), 0u);
}

TEST(CharBackend, TtyBackendUsesStdin) {
  if (::isatty(STDIN_FILENO)) GTEST_SKIP() << "stdin is a terminal; would change its mode";
  auto b = CharBackend::open({CharBackendMode::kTty, {}});
  ASSERT_TRUE(b) << b.error().what();
  EXPECT_EQ((*b)->input_fd(), STDIN_FILENO);
}

TEST(CharBackend, PtyBackendRoundTripsBytesThroughThePty) {
  auto b = CharBackend::open({CharBackendMode::kPty, {}});
  ASSERT_TRUE(b) << b.error().what();
  ASSERT_TRUE((*b)->pty_path().starts_with("/dev/pts/")) << (*b)->pty_path();
  auto slave = open_file((*b)->pty_path(), O_RDWR | O_NOCTTY);
  ASSERT_TRUE(slave) << slave.error().what();

  // Guest -> user: every byte unchanged (raw mode: no \n -> \r\n, no ^C
  // handling).
  const std::string out = std::string("boot\n\x03\r\x7f", 8) + '\0';
  (*b)->write(bytes(out));
  EXPECT_EQ(read_some(slave->get(), out.size()), out);

  // User -> guest: no line buffering (no newline needed), no echo.
  const std::string in = "ls\x03\x04";
  ASSERT_TRUE(write_all(slave->get(), bytes(in)));
  EXPECT_EQ(read_some((*b)->input_fd(), in.size()), in);
  EXPECT_EQ(read_some(slave->get(), 1, 100), "");  // nothing echoed back
}

TEST(CharBackend, PtyOutputNobodyReadsIsDroppedNotBlocking) {
  auto b = CharBackend::open({CharBackendMode::kPty, {}});
  ASSERT_TRUE(b);
  std::string chunk(4096, 'x');
  // Far more than a pty buffers; must return rather than block the caller.
  for (int i = 0; i < 256; ++i) (*b)->write(bytes(chunk));
  EXPECT_GT((*b)->dropped_output_bytes(), 0u);
}

TEST(RawTerminal, EntersRawModeAndRestoresOnDestruction) {
  auto b = CharBackend::open({CharBackendMode::kPty, {}});
  ASSERT_TRUE(b);
  auto slave = open_file((*b)->pty_path(), O_RDWR | O_NOCTTY);
  ASSERT_TRUE(slave);
  termios cooked{};
  ASSERT_EQ(::tcgetattr(slave->get(), &cooked), 0);
  cooked.c_lflag |= ICANON | ECHO | ISIG;
  cooked.c_oflag |= OPOST | ONLCR;
  ASSERT_EQ(::tcsetattr(slave->get(), TCSANOW, &cooked), 0);
  {
    auto raw = RawTerminal::enter(slave->get());
    ASSERT_TRUE(raw) << raw.error().what();
    termios now{};
    ASSERT_EQ(::tcgetattr(slave->get(), &now), 0);
    EXPECT_EQ(now.c_lflag & (ICANON | ECHO | ISIG), 0u);
    EXPECT_EQ(now.c_oflag & OPOST, static_cast<tcflag_t>(OPOST));  // kept for log lines
  }
  termios after{};
  ASSERT_EQ(::tcgetattr(slave->get(), &after), 0);
  EXPECT_EQ(after.c_lflag & (ICANON | ECHO | ISIG), static_cast<tcflag_t>(ICANON | ECHO | ISIG));
}

TEST(RawTerminal, SignalHookRestoresTheTerminal) {
  auto b = CharBackend::open({CharBackendMode::kPty, {}});
  ASSERT_TRUE(b);
  auto slave = open_file((*b)->pty_path(), O_RDWR | O_NOCTTY);
  ASSERT_TRUE(slave);
  termios cooked{};
  ASSERT_EQ(::tcgetattr(slave->get(), &cooked), 0);
  cooked.c_lflag |= ICANON | ECHO;
  ASSERT_EQ(::tcsetattr(slave->get(), TCSANOW, &cooked), 0);
  auto raw = RawTerminal::enter(slave->get());
  ASSERT_TRUE(raw);
  restore_terminal_from_signal();
  termios now{};
  ASSERT_EQ(::tcgetattr(slave->get(), &now), 0);
  EXPECT_EQ(now.c_lflag & (ICANON | ECHO), static_cast<tcflag_t>(ICANON | ECHO));
}

TEST(RawTerminal, RefusesSomethingThatIsNotATerminal) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  Fd r(fds[0]), w(fds[1]);
  EXPECT_FALSE(RawTerminal::enter(r.get()));
}

}  // namespace
}  // namespace skiff

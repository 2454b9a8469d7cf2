#include "chardev/input_pump.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <dirent.h>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

#include "base/fd.h"
#include "chardev/char_backend.h"

namespace skiff {
namespace {

using namespace std::chrono_literals;

// Collects callback bytes; wait_for() blocks until n bytes have arrived.
struct Sink {
  std::mutex mu;
  std::condition_variable cv;
  std::string got;
  void operator()(std::span<const uint8_t> b) {
    std::lock_guard lock(mu);
    got.append(b.begin(), b.end());
    cv.notify_all();
  }
  std::string wait_for(size_t n) {
    std::unique_lock lock(mu);
    cv.wait_for(lock, 5s, [&] { return got.size() >= n; });
    return got;
  }
};

struct Pipe {
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) == 0) {
      r.reset(fds[0]);
      w.reset(fds[1]);
    }
  }
  Fd r, w;
};

std::span<const uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

bool thread_named(const std::string& name) {
  DIR* d = ::opendir("/proc/self/task");
  if (!d) return false;
  bool found = false;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    auto comm = read_file(std::string("/proc/self/task/") + e->d_name + "/comm");
    if (comm && *comm == name + "\n") found = true;
  }
  ::closedir(d);
  return found;
}

TEST(InputPump, DeliversBytesWrittenToTheFd) {
  Pipe p;
  Sink sink;
  auto pump = InputPump::start(p.r.get(), std::ref(sink));
  ASSERT_TRUE(pump) << pump.error().what();
  ASSERT_TRUE(write_all(p.w.get(), bytes("abc")));
  ASSERT_TRUE(write_all(p.w.get(), bytes("def")));
  EXPECT_EQ(sink.wait_for(6), "abcdef");
}

TEST(InputPump, ThreadIsNamedSerialIn) {
  Pipe p;
  Sink sink;
  auto pump = InputPump::start(p.r.get(), std::ref(sink));
  ASSERT_TRUE(pump);
  // The name is set by the thread itself; give it a moment.
  bool named = false;
  for (int i = 0; i < 100 && !named; ++i) {
    named = thread_named("serial-in");
    if (!named) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(named);
}

TEST(InputPump, DestructionStopsAnIdlePumpPromptly) {
  Pipe p;
  Sink sink;
  auto start = std::chrono::steady_clock::now();
  {
    auto pump = InputPump::start(p.r.get(), std::ref(sink));
    ASSERT_TRUE(pump);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_TRUE(sink.got.empty());
}

TEST(InputPump, EndOfInputEndsTheThreadWithoutSpinning) {
  Pipe p;
  Sink sink;
  auto pump = InputPump::start(p.r.get(), std::ref(sink));
  ASSERT_TRUE(pump);
  ASSERT_TRUE(write_all(p.w.get(), bytes("last")));
  p.w.reset();
  EXPECT_EQ(sink.wait_for(4), "last");
  // Once the thread saw EOF it is gone: no thread named serial-in remains.
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = !thread_named("serial-in");
    if (!gone) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(gone);
}

TEST(InputPump, RejectsBadArguments) {
  Sink sink;
  EXPECT_FALSE(InputPump::start(-1, std::ref(sink)));
  Pipe p;
  EXPECT_FALSE(InputPump::start(p.r.get(), std::ref(sink), "a-name-longer-than-15"));
}

TEST(InputPump, CarriesPtyInputToTheCallback) {
  auto b = CharBackend::open({CharBackendMode::kPty, {}});
  ASSERT_TRUE(b);
  Sink sink;
  auto pump = InputPump::start((*b)->input_fd(), std::ref(sink));
  ASSERT_TRUE(pump);
  auto slave = open_file((*b)->pty_path(), O_RDWR | O_NOCTTY);
  ASSERT_TRUE(slave);
  ASSERT_TRUE(write_all(slave->get(), bytes("root\r")));
  EXPECT_EQ(sink.wait_for(5), "root\r");
  // Closing the user's side is not a hang-up for the pump (the backend keeps
  // the slave open), so a later user can still type.
  slave->reset();
  auto again = open_file((*b)->pty_path(), O_RDWR | O_NOCTTY);
  ASSERT_TRUE(again);
  ASSERT_TRUE(write_all(again->get(), bytes("x")));
  EXPECT_EQ(sink.wait_for(6), "root\rx");
}

}  // namespace
}  // namespace skiff

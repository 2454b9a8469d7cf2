// VringWorker: the thread that runs a vhost-user ring's queue handler on
// kicks, wake() and its backend fds' edges, each watched for what the
// device asked (virtio::BackendEvent's events).

#include "vhost_user/vring_worker.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "base/fd.h"
#include "base/full_pipe.h"

namespace skiff::vhost_user {
namespace {

using namespace std::chrono_literals;

// Waits up to a second for `count` to pass `above`.
bool grows_past(const std::atomic<int>& count, int above) {
  for (auto end = std::chrono::steady_clock::now() + 1s; std::chrono::steady_clock::now() < end;) {
    if (count.load() > above) return true;
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

// The count once it has not changed for 50 ms.
int settled(const std::atomic<int>& count) {
  int last = -1;
  while (last != count.load()) {
    last = count.load();
    std::this_thread::sleep_for(50ms);
  }
  return last;
}

TEST(VringWorker, RunsOnStartAndOnEveryKick) {
  Fd kick(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  ASSERT_TRUE(kick);
  std::atomic<int> runs{0};
  auto w = VringWorker::start("test-q0", kick.get(), [&] { ++runs; });
  ASSERT_TRUE(w) << w.error().what();
  ASSERT_TRUE(grows_past(runs, 0));
  const int before = settled(runs);
  uint64_t one = 1;
  ASSERT_EQ(::write(kick.get(), &one, sizeof one), static_cast<ssize_t>(sizeof one));
  EXPECT_TRUE(grows_past(runs, before));
}

TEST(VringWorker, WatchesABackendFdForWhatTheDeviceAsked) {
  // A pipe's write end watched for EPOLLOUT: full, it stays quiet; once the
  // reader makes room, the worker runs (as when a full tap can take frames
  // again).
  test_support::FullPipe pipe;
  ASSERT_TRUE(pipe.fill()) << std::strerror(errno);
  Fd kick(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  ASSERT_TRUE(kick);
  std::atomic<int> runs{0};
  const VringWorker::BackendFd backend[] = {{pipe.wr.get(), EPOLLOUT}};
  auto w = VringWorker::start(
      "test-q1", kick.get(), [&] { ++runs; }, backend);
  ASSERT_TRUE(w) << w.error().what();
  ASSERT_TRUE(grows_past(runs, 0));
  const int before = settled(runs);
  pipe.drain();
  EXPECT_TRUE(grows_past(runs, before)) << "room in the pipe did not wake the worker";
}

}  // namespace
}  // namespace skiff::vhost_user

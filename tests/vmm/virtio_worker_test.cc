// VirtioWorker: a PCI virtio device's I/O thread runs the device's handler
// for a queue when its kick eventfd is signalled, and once per edge of a
// backend fd, watched for what the device asked (virtio::BackendEvent).
#include "vmm/virtio_worker.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "base/full_pipe.h"

namespace skiff {
namespace {

using namespace std::chrono_literals;

// How often process() ran for each of queues 0..3.
struct Runs {
  std::array<std::atomic<int>, 4> n{};
  std::function<void(uint16_t)> process() {
    return [this](uint16_t q) { ++n.at(q); };
  }
  // Waits up to 10 s (a loaded machine) for queue q's count to pass `above`.
  bool grows_past(uint16_t q, int above) const {
    for (auto end = std::chrono::steady_clock::now() + 10s;
         std::chrono::steady_clock::now() < end;) {
      if (n[q].load() > above) return true;
      std::this_thread::sleep_for(1ms);
    }
    return false;
  }
};

Fd eventfd() {
  return Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
}

void signal(const Fd& fd) {
  uint64_t one = 1;
  ASSERT_EQ(::write(fd.get(), &one, sizeof one), static_cast<ssize_t>(sizeof one));
}

TEST(VirtioWorker, AKickRunsItsQueueAndResetsTheEventfd) {
  Fd q0 = eventfd(), q1 = eventfd();
  ASSERT_TRUE(q0 && q1);
  Runs runs;
  auto w = VirtioWorker::start("test-dev", {q0.get(), q1.get()}, {}, runs.process());
  ASSERT_TRUE(w) << w.error().what();
  signal(q1);
  ASSERT_TRUE(runs.grows_past(1, 0));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(runs.n[1].load(), 1) << "one kick, one run: the eventfd was read";
  EXPECT_EQ(runs.n[0].load(), 0);
  signal(q0);
  EXPECT_TRUE(runs.grows_past(0, 0));
}

TEST(VirtioWorker, ABackendFdRunsItsQueueOncePerEdgeOfWhatItIsWatchedFor) {
  // The write end of a full pipe watched for EPOLLOUT for queue 3 (as a
  // full tap's tx queue): quiet while full; when the reader makes room,
  // queue 3 runs once, though the pipe stays writable (edge-triggered: a
  // level-triggered watch would run it over and over).
  test_support::FullPipe pipe;
  ASSERT_TRUE(pipe.fill()) << std::strerror(errno);
  Fd kick = eventfd();
  ASSERT_TRUE(kick);
  Runs runs;
  auto w =
      VirtioWorker::start("test-dev", {kick.get()}, {{pipe.wr.get(), 3, EPOLLOUT}}, runs.process());
  ASSERT_TRUE(w) << w.error().what();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(runs.n[3].load(), 0) << "a full pipe is not writable";
  pipe.drain();
  ASSERT_TRUE(runs.grows_past(3, 0)) << "room in the pipe did not wake the worker";
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(runs.n[3].load(), 1);
  EXPECT_EQ(runs.n[0].load(), 0);
}

TEST(VirtioWorker, ABadFdIsANamedError) {
  Runs runs;
  auto w = VirtioWorker::start("test-dev", {-1}, {}, runs.process());
  ASSERT_FALSE(w);
  EXPECT_NE(w.error().what().find("test-dev"), std::string::npos) << w.error().what();
}

}  // namespace
}  // namespace skiff

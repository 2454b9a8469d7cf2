// Crash safety: a child process writes and flushes, reporting each flushed
// write through a pipe; it is SIGKILLed at a random moment. Afterwards
// qemu-img check must report no corruption (exit 0, or 3 = leaks only) and
// every write the child reported as flushed must read back.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <random>
#include <thread>

#include "block/qcow2/create.h"
#include "block/qcow2/qcow2_image.h"
#include "block_test_util.h"

namespace skiff {
namespace {

constexpr uint64_t kSlot = 5000;  // unaligned, crosses clusters
constexpr uint64_t kSize = 64ull << 20;

uint8_t pattern(uint32_t round, uint32_t slot) {
  return static_cast<uint8_t>(slot * 31 + round * 7 + 1);
}

[[noreturn]] void child(const std::string& path, uint32_t round, int fd) {
  auto img = Qcow2Image::open(path, {});
  if (!img) _exit(2);
  std::mt19937_64 rng(round);
  for (uint32_t slot = 0;; ++slot) {
    const uint64_t s = (slot * 7919 + round * 131) % (kSize / 2 / kSlot - 1);  // lower half: writes
    std::vector<uint8_t> d(kSlot, pattern(round, static_cast<uint32_t>(s)));
    if (!(*img)->write(100 + s * kSlot, d)) _exit(3);
    if (rng() % 5 == 0 && !(*img)->discard((32 + rng() % 31) << 20, 1 << 20)) _exit(4);
    if (!(*img)->flush()) _exit(5);
    uint32_t rec[2] = {round, static_cast<uint32_t>(s)};
    if (::write(fd, rec, sizeof rec) != sizeof rec) _exit(6);
  }
}

TEST(Qcow2Crash, KilledWriterLeavesConsistentImageWithFlushedData) {
  if (!testing::have_tool("qemu-img")) GTEST_SKIP() << "skipped: qemu-img not installed";
  testing::ScratchDir dir;
  const std::string path = dir.file("crash.qcow2");
  qcow2::CreateOptions co;
  co.size = kSize;
  co.cluster_size = 4096;  // many allocations, refcount block creation, table growth
  co.refcount_bits = 1;
  ASSERT_TRUE(qcow2::create(path, co));
  std::mt19937_64 rng(std::random_device{}());
  // slot -> (round, expected byte) of the last flushed write.
  std::map<uint32_t, uint8_t> flushed;
  for (uint32_t round = 1; round <= 4; ++round) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(p[0]);
      child(path, round, p[1]);
    }
    ::close(p[1]);
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 600));
    ::kill(pid, SIGKILL);
    int st = 0;
    ::waitpid(pid, &st, 0);
    ASSERT_TRUE(WIFSIGNALED(st)) << "child exited early with status " << WEXITSTATUS(st);
    uint32_t rec[2];
    int n = 0;
    while (::read(p[0], rec, sizeof rec) == sizeof rec) {
      flushed[rec[1]] = pattern(rec[0], rec[1]);
      ++n;
    }
    ::close(p[0]);
    auto chk = testing::run("qemu-img check " + path);
    EXPECT_TRUE(chk.status == 0 || chk.status == 3)
        << "round " << round << " exit " << chk.status << "\n"
        << chk.output;
    // Discards only touch the upper half, so every flushed slot is exact.
    auto img = Qcow2Image::open(path, {.read_only = true});
    ASSERT_TRUE(img) << img.error().what();
    int checked = 0;
    for (auto [slot, byte] : flushed) {
      std::vector<uint8_t> got(kSlot);
      ASSERT_TRUE((*img)->read(100 + slot * kSlot, got));
      const auto bad = std::find_if(got.begin(), got.end(), [&](uint8_t b) { return b != byte; });
      ASSERT_TRUE(bad == got.end())
          << "round " << round << " slot " << slot << " byte " << (bad - got.begin()) << " = "
          << int(*bad) << ", want " << int(byte);
      ++checked;
    }
    EXPECT_GT(n, 0) << "child made no progress in round " << round;
    (void)checked;
  }
}

}  // namespace
}  // namespace skiff

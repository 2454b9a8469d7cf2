// Machine against the real /dev/kvm with the purpose-built guests: pause and
// resume at consistent points, exit counters, and the reboot path.
#include "vmm/machine.h"

#include <gtest/gtest.h>
#include <linux/kvm.h>
#include <unistd.h>

#include <future>

#include "guests_dir.h"

namespace skiff {
namespace {

VmConfig guest_config(const std::string& name, const std::string& cmdline = {}) {
  VmConfig c;
  c.kernel = std::string(SKIFF_GUESTS_DIR) + "/" + name + ".pvh.elf";
  c.cmdline = cmdline;
  c.memory_size = 64ull << 20;
  c.serial = "off";
  return c;
}

class MachineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/kvm", R_OK | W_OK) != 0) GTEST_SKIP() << "skipped: /dev/kvm is not available";
  }
};

TEST_F(MachineTest, RunsGuestToDebugExit) {
  auto m = Machine::create(guest_config("hello"));
  ASSERT_TRUE(m) << m.error().error.what();
  Outcome o = (*m)->run();
  EXPECT_EQ(o.reason, StopReason::kDebugExit) << o.detail;
  EXPECT_EQ(o.debug_status, 33);
}

TEST_F(MachineTest, PauseAndResumeManyTimesWhileRing3LoopChecksItself) {
  // iters chosen so the loop runs for a few seconds (10^8 ~ 30 ms natively).
  auto m = Machine::create(guest_config("ring3_loop", "iters=20000000000"));
  ASSERT_TRUE(m) << m.error().error.what();
  Machine& machine = **m;
  auto done = std::async(std::launch::async, [&] { return machine.run(); });
  // Let it start.
  while (machine.exit_counts().empty()) usleep(1000);
  usleep(20000);
  EXPECT_FALSE(machine.resume()) << "resume of a running VM must fail";
  for (int i = 0; i < 200; ++i) {
    auto p = machine.pause();
    if (!p && done.wait_for(std::chrono::seconds(0)) == std::future_status::ready) break;
    ASSERT_TRUE(p) << p.error().what();
    ASSERT_TRUE(machine.paused());
    EXPECT_FALSE(machine.pause()) << "pausing a paused VM must fail";
    ASSERT_TRUE(machine.resume());
  }
  Outcome o = done.get();
  EXPECT_EQ(o.reason, StopReason::kDebugExit) << o.detail;
  EXPECT_EQ(o.debug_status, 33) << "guest saw corruption (ok=0) or failed";
}

TEST_F(MachineTest, ExitCountsRecordPortIo) {
  // Counters live in the vCPU runners, which run() tears down: read them
  // while the VM runs.
  auto m2 = Machine::create(guest_config("ring3_loop", "iters=5000000000"));
  ASSERT_TRUE(m2);
  auto done = std::async(std::launch::async, [&] { return (*m2)->run(); });
  while ((*m2)->exit_counts().empty()) usleep(1000);
  uint64_t io = 0;
  for (int i = 0; i < 1000 && io == 0; ++i) {
    usleep(1000);
    auto c = (*m2)->exit_counts();
    if (!c.empty()) io = c[0][KVM_EXIT_IO];
  }
  EXPECT_GT(io, 0u) << "the guest printed over port I/O, so IO exits must be counted";
  (*m2)->request_poweroff();
  EXPECT_EQ(done.get().reason, StopReason::kPoweroff);
}

TEST_F(MachineTest, BadKernelIsAConfigurationError) {
  auto c = guest_config("hello");
  c.kernel = "/nonexistent/kernel";
  auto m = Machine::create(c);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().exit_status, kExitUsage);
  EXPECT_NE(m.error().error.what().find("/nonexistent/kernel"), std::string::npos);
}

}  // namespace
}  // namespace skiff

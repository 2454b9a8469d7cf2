// virtio-pci devices in a real Machine: the virtio_blk test guest drives a
// disk and an RNG, and its queue notifications must arrive through the
// ioeventfds (never as MMIO exits to skiff).
#include "vmm/pci_devices.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>

#include "guests_dir.h"
#include "vmm/machine.h"

namespace skiff {
namespace {

class PciMachineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/kvm", R_OK | W_OK) != 0)
      GTEST_SKIP() << "skipped: /dev/kvm is not available";
    char tmpl[] = "/tmp/skiff_pci_disk_XXXXXX";
    int fd = ::mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    ::close(fd);
    disk_ = tmpl;
    std::mt19937 rng(42);
    std::ofstream f(disk_, std::ios::binary);
    for (int i = 0; i < 64 * 1024; ++i) f.put(static_cast<char>(rng()));
  }
  void TearDown() override {
    if (!disk_.empty()) std::remove(disk_.c_str());
  }
  VmConfig config() const {
    VmConfig c;
    c.kernel = std::string(SKIFF_GUESTS_DIR) + "/virtio_blk.pvh.elf";
    c.cmdline = "seed=3";
    c.memory_size = 64ull << 20;
    c.serial = "off";
    c.disks.push_back(DiskConfig{.path = disk_, .serial = "vmmtest"});
    c.rng = RngConfig{};
    return c;
  }
  std::string disk_;
};

TEST_F(PciMachineTest, GuestNotificationsArriveThroughIoeventfdsNotExits) {
  auto m = Machine::create(config());
  ASSERT_TRUE(m) << m.error().error.what();
  Outcome o = (*m)->run();
  ASSERT_EQ(o.reason, StopReason::kDebugExit) << o.detail;
  EXPECT_EQ(o.debug_status, 33);  // the guest checked its reads and writes
  auto c = (*m)->device_counters();
  // GET_ID, read, write, read back, flush; two RNG requests.
  EXPECT_EQ(c["blk0"]["notifies"], 5u);
  EXPECT_EQ(c["blk0"]["notify_exits"], 0u);
  EXPECT_EQ(c["blk0"]["write_ops"], 1u);
  EXPECT_EQ(c["blk0"]["write_bytes"], 4096u);
  EXPECT_EQ(c["blk0"]["flush_ops"], 1u);
  EXPECT_EQ(c["rng0"]["notifies"], 2u);
  EXPECT_EQ(c["rng0"]["notify_exits"], 0u);
}

// VmPlumbing against a real VM: MSI messages land in the LAPIC's IRR
// through irqfd routes, and past the route limit through KVM_SIGNAL_MSI.
class VmPlumbingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sys = kvm::System::open();
    if (!sys) GTEST_SKIP() << "skipped: " << sys.error().what();
    sys_ = std::move(*sys);
    vm_ = *sys_.create_vm();
    ASSERT_TRUE(vm_->create_irqchip());
    vcpu_ = *vm_->create_vcpu(0);
    auto lapic = vcpu_.get_lapic();
    ASSERT_TRUE(lapic);
    uint32_t svr;
    std::memcpy(&svr, lapic->regs + 0xf0, 4);
    svr |= 0x100;  // software-enable the LAPIC (SDM vol. 3 §11.9)
    std::memcpy(lapic->regs + 0xf0, &svr, 4);
    ASSERT_TRUE(vcpu_.set_lapic(*lapic));
  }
  bool irr(uint8_t vector) {
    auto lapic = vcpu_.get_lapic();
    EXPECT_TRUE(lapic);
    uint32_t word;
    std::memcpy(&word, lapic->regs + 0x200 + 0x10 * (vector / 32), 4);
    return (word >> (vector % 32)) & 1;
  }
  kvm::System sys_;
  std::shared_mutex mu_;
  std::optional<kvm::Vm> vm_;
  kvm::Vcpu vcpu_;
};

TEST_F(VmPlumbingTest, MsiThroughIrqfdRoutesReachesTheLapic) {
  VmPlumbing p(mu_, vm_);
  EXPECT_FALSE(irr(0x45));
  p.send_msi(0xfee00000, 0x45);  // fixed delivery, vector 0x45, APIC ID 0
  EXPECT_TRUE(irr(0x45));
  EXPECT_EQ(p.msi_routes(), 1u);
  p.send_msi(0xfee00000, 0x45);  // same message: same route
  p.send_msi(0xfee00000, 0x46);
  EXPECT_TRUE(irr(0x46));
  EXPECT_EQ(p.msi_routes(), 2u);
}

TEST_F(VmPlumbingTest, RouteTableIsBoundedAndSignalMsiTakesOver) {
  VmPlumbing p(mu_, vm_);
  // Messages to APIC IDs that do not exist: routed, delivered nowhere.
  for (uint32_t i = 0; i < VmPlumbing::kMaxMsiRoutes + 10; ++i)
    p.send_msi(0xfee00000 | (uint64_t{(i % 250) + 1} << 12), 0x30 + i / 250);
  EXPECT_EQ(p.msi_routes(), VmPlumbing::kMaxMsiRoutes);
  p.send_msi(0xfee00000, 0x77);
  EXPECT_TRUE(irr(0x77));
  EXPECT_EQ(p.msi_routes(), VmPlumbing::kMaxMsiRoutes);
  p.vm_destroyed();
  EXPECT_EQ(p.msi_routes(), 0u);
}

TEST(PciMmio64Window, StartsAtTheFirstGigabyteAboveRamAndStaysAddressable) {
  constexpr uint64_t G = 1ull << 30;
  pci::BarWindow small = pci_mmio64_window(512ull << 20);  // all RAM below 3 GiB
  EXPECT_EQ(small.start, 4 * G);
  EXPECT_EQ(small.end, 36 * G);
  pci::BarWindow big = pci_mmio64_window(5 * G + 4096);  // 2 GiB + 4 KiB above 4 GiB
  EXPECT_EQ(big.start, 7 * G);
  EXPECT_FALSE(pci_mmio64_window(600 * G).end);  // would pass 2^39
}

TEST_F(PciMachineTest, DiskQueuesDefaultToOnePerVcpu) {
  VmConfig c = config();
  c.boot_cpus = 3;
  std::string out = disk_ + ".serial";
  c.serial = "file=" + out;
  Outcome o;
  {
    auto m = Machine::create(c);
    ASSERT_TRUE(m) << m.error().error.what();
    o = (*m)->run();
  }
  std::ifstream f(out);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::remove(out.c_str());
  EXPECT_EQ(o.reason, StopReason::kDebugExit) << o.detail;
  EXPECT_EQ(o.debug_status, 33) << text;
  // The guest reads num_queues from the common configuration.
  EXPECT_NE(text.find("BLK_QUEUES=3\n"), std::string::npos) << text;
}

TEST_F(PciMachineTest, MissingDiskImageIsAConfigurationError) {
  VmConfig c = config();
  c.disks[0].path = "/nonexistent/disk.img";
  auto m = Machine::create(c);
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().error.message.find("--disk path=/nonexistent/disk.img"), std::string::npos)
      << m.error().error.message;
}

TEST_F(PciMachineTest, BadQueueSizeIsAConfigurationError) {
  VmConfig c = config();
  c.disks[0].queue_size = 100;
  EXPECT_FALSE(Machine::create(c));
}

}  // namespace
}  // namespace skiff

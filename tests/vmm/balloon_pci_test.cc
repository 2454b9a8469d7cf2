// --balloon wired into the PCI side of the machine, without KVM: the
// device exists (slot after the others), reaches vm.counters as balloon0
// and takes new targets; without --balloon there is none.
#include <gtest/gtest.h>

#include <optional>
#include <shared_mutex>
#include <vector>

#include "virtio/devices/balloon.h"
#include "vmm/pci_devices.h"

namespace skiff {
namespace {

struct BalloonPci : ::testing::Test {
  std::unique_ptr<PciDevices> create(const VmConfig& c) {
    auto p = PciDevices::create(c, mem, pio, mmio, plumbing, [](uint32_t, bool) {});
    EXPECT_TRUE(p) << p.error().what();
    return p ? std::move(*p) : nullptr;
  }
  std::vector<uint8_t> ram = std::vector<uint8_t>(1 << 20);
  GuestMemory mem = *GuestMemory::create({{0, ram.size(), ram.data()}});
  Bus pio{"pio"};
  Bus mmio{"mmio"};
  std::shared_mutex vm_mu;
  std::optional<kvm::Vm> vm;  // none: interrupts go nowhere
  VmPlumbing plumbing{vm_mu, vm};
};

TEST_F(BalloonPci, BalloonIsCreatedAndCounted) {
  VmConfig c{};
  c.rng = RngConfig{};
  c.balloon = BalloonConfig{.size = 8 << 20, .statistics_polling_interval = 5};
  auto p = create(c);
  ASSERT_TRUE(p);
  ASSERT_NE(p->balloon(), nullptr);
  EXPECT_EQ(p->balloon()->target_bytes(), 8u << 20);
  EXPECT_EQ(p->balloon()->backend_events().size(), 1u) << "the statistics timer";
  auto counters = p->counters();
  ASSERT_TRUE(counters.count("balloon0"));
  EXPECT_EQ(counters["balloon0"]["target_bytes"], 8u << 20);
  EXPECT_EQ(counters["balloon0"]["actual_bytes"], 0u);
  EXPECT_EQ(counters["balloon0"]["inflated_pages"], 0u);
  EXPECT_FALSE(counters["balloon0"].count("total_memory")) << "no statistics reported yet";
  ASSERT_TRUE(p->balloon()->set_target(2 << 20));
  EXPECT_EQ(p->counters()["balloon0"]["target_bytes"], 2u << 20);
}

TEST_F(BalloonPci, NoBalloonWithoutTheOption) {
  VmConfig c{};
  c.rng = RngConfig{};
  auto p = create(c);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->balloon(), nullptr);
  EXPECT_FALSE(p->counters().count("balloon0"));
}

}  // namespace
}  // namespace skiff

// Virtio device events from a guest's register writes to the event
// monitor's line, without KVM: real PciDevices (host bridge, virtio-pci
// transport, device threads) on plain buses, a VmPlumbing with no VM, and
// the driver's side played through ECAM and BAR 0 like a guest would.
#include "vmm/device_events.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <vector>

#include "api/event_monitor.h"
#include "arch/x86/layout.h"
#include "virtio/transport/pci/virtio_pci.h"
#include "vmm/pci_devices.h"
#include "vmm/vmm_service.h"

namespace skiff {
namespace {

struct Ram {
  explicit Ram(size_t size) : bytes(size) { mem = *GuestMemory::create({{0, size, bytes.data()}}); }
  std::vector<uint8_t> bytes;
  GuestMemory mem;
};

class DeviceEventsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VmConfig c;
    c.memory_size = ram.bytes.size();
    c.serial = "off";
    c.rng = RngConfig{};
    c.console = ConsoleConfig{"off"};
    auto p = PciDevices::create(
        c, ram.mem, pio, mmio, plumbing, [](uint32_t, bool) {},
        [this](const VirtioDeviceEvent& e) {
          std::lock_guard lock(mu);
          events.push_back(e);
        });
    ASSERT_TRUE(p) << p.error().what();
    pci = std::move(*p);
  }
  // ECAM config access to bus 0, device `dev`.
  uint32_t cfg_read32(unsigned dev, unsigned reg) {
    uint32_t v = 0;
    mmio.read(x86::kPciEcamBase + (dev << 15) + reg, std::span(reinterpret_cast<uint8_t*>(&v), 4));
    return v;
  }
  void cfg_write16(unsigned dev, unsigned reg, uint16_t v) {
    mmio.write(x86::kPciEcamBase + (dev << 15) + reg,
               std::span(reinterpret_cast<const uint8_t*>(&v), 2));
  }
  // The slot of the first function with virtio device id 0x1040 + id.
  unsigned find(uint16_t virtio_id) {
    for (unsigned d = 1; d < 32; ++d)
      if (cfg_read32(d, 0) == ((0x1040u + virtio_id) << 16 | 0x1af4u)) return d;
    return 0;
  }
  uint64_t enable_bar0(unsigned dev) {
    uint64_t bar = (cfg_read32(dev, 0x10) & ~0xfull) | uint64_t{cfg_read32(dev, 0x14)} << 32;
    cfg_write16(dev, 0x04, 0x2);  // Memory Space
    return bar;
  }
  template <typename T>
  void bar_write(uint64_t bar, uint64_t off, T v) {
    mmio.write(bar + off, std::span(reinterpret_cast<const uint8_t*>(&v), sizeof v));
  }
  // The §3.1.1 sequence up to DRIVER_OK, with no queue enabled.
  void bring_up(uint64_t bar) {
    using namespace virtio;
    bar_write<uint8_t>(bar, kCfgDeviceStatus, kStatusAcknowledge | kStatusDriver);
    bar_write<uint32_t>(bar, kCfgDriverFeatureSelect, 1);
    bar_write<uint32_t>(bar, kCfgDriverFeature, 1);  // VERSION_1 (bit 32)
    bar_write<uint8_t>(bar, kCfgDeviceStatus,
                       kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    bar_write<uint8_t>(bar, kCfgDeviceStatus,
                       kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }
  std::vector<VirtioDeviceEvent> snapshot() {
    std::lock_guard lock(mu);
    return events;
  }

  Ram ram{64 << 20};
  Bus pio{"pio"};
  Bus mmio{"mmio"};
  std::shared_mutex vm_mu;
  std::optional<kvm::Vm> no_vm;
  VmPlumbing plumbing{vm_mu, no_vm};
  std::mutex mu;
  std::vector<VirtioDeviceEvent> events;
  std::unique_ptr<PciDevices> pci;
};

TEST_F(DeviceEventsTest, DriverResetAfterDriverOkReachesTheSinkWithTheDeviceName) {
  unsigned slot = find(3);  // virtio-console
  ASSERT_NE(slot, 0u);
  uint64_t bar = enable_bar0(slot);
  ASSERT_NE(bar, 0u);
  // Linux resets the device at probe first: not an event.
  bar_write<uint8_t>(bar, virtio::kCfgDeviceStatus, 0);
  EXPECT_TRUE(snapshot().empty());
  bring_up(bar);
  bar_write<uint8_t>(bar, virtio::kCfgDeviceStatus, 0);
  auto ev = snapshot();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].id, "console0");
  EXPECT_EQ(ev[0].event, "activated");
  EXPECT_EQ(ev[1].id, "console0");
  EXPECT_EQ(ev[1].event, "reset");
  EXPECT_TRUE(ev[1].error.empty());
}

TEST_F(DeviceEventsTest, MachineResetOfALiveDeviceIsAResetEvent) {
  unsigned slot = find(4);  // virtio-rng
  ASSERT_NE(slot, 0u);
  bring_up(enable_bar0(slot));
  pci->reset();  // a guest reboot
  auto ev = snapshot();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[1].id, "rng0");
  EXPECT_EQ(ev[1].event, "reset");
}

TEST_F(DeviceEventsTest, NeedsResetBecomesAResetEventWithTheError) {
  unsigned slot = find(4);
  ASSERT_NE(slot, 0u);
  uint64_t bar = enable_bar0(slot);
  using namespace virtio;
  // Queue 0 with its used ring outside guest RAM: DRIVER_OK fails.
  bar_write<uint8_t>(bar, kCfgDeviceStatus, kStatusAcknowledge | kStatusDriver);
  bar_write<uint32_t>(bar, kCfgDriverFeatureSelect, 1);
  bar_write<uint32_t>(bar, kCfgDriverFeature, 1);
  bar_write<uint8_t>(bar, kCfgDeviceStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  bar_write<uint16_t>(bar, kCfgQueueSelect, 0);
  bar_write<uint64_t>(bar, kCfgQueueDesc, 0x1000);
  bar_write<uint64_t>(bar, kCfgQueueDriver, 0x2000);
  bar_write<uint64_t>(bar, kCfgQueueDevice, 1ull << 40);
  bar_write<uint16_t>(bar, kCfgQueueEnable, 1);
  bar_write<uint8_t>(bar, kCfgDeviceStatus,
                     kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  auto ev = snapshot();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].id, "rng0");
  EXPECT_EQ(ev[0].event, "reset");
  EXPECT_NE(ev[0].error.find("queue 0"), std::string::npos) << ev[0].error;
}

TEST(DeviceEventLine, IsCloudHypervisorShaped) {
  auto line = api::EventMonitor::format(
      virtio_device_vmm_event(make_virtio_device_event("blk0", virtio::DeviceEvent::kReset, "")),
      std::chrono::nanoseconds(42));
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["source"], "virtio-device");
  EXPECT_EQ(j["event"], "reset");
  EXPECT_EQ(j["properties"], (nlohmann::json{{"id", "blk0"}}));

  auto failed = nlohmann::json::parse(
      api::EventMonitor::format(virtio_device_vmm_event(make_virtio_device_event(
                                    "rng0", virtio::DeviceEvent::kNeedsReset, "queue 0: bad")),
                                std::chrono::nanoseconds(0)));
  EXPECT_EQ(failed["event"], "reset");
  EXPECT_EQ(failed["properties"]["id"], "rng0");
  EXPECT_EQ(failed["properties"]["error"], "queue 0: bad");

  EXPECT_EQ(make_virtio_device_event("x", virtio::DeviceEvent::kActivated, "").event, "activated");
  EXPECT_FALSE(forward_device_events("x", {}));  // no sink, no callback
}

}  // namespace
}  // namespace skiff

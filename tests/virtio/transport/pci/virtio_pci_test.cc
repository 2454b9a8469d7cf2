#include "virtio/transport/pci/virtio_pci.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <tuple>

#include "devices/pci/pci_test_util.h"
#include "virtio/devices/rng.h"
#include "virtio/fake_driver.h"

namespace skiff::virtio {
namespace {

using pci::testing::Machine;
using testing::Buf;
using testing::FakeDriver;
using testing::FakeGuest;

// Two queues of 16, feature bit 3 offered, 4-byte config with byte 0
// writable; completes every chain with its writable length. With
// `ring_reset` it can reset one queue (VIRTIO_F_RING_RESET); with `hold` set
// it keeps chains "in flight" and completes them only when the queue stops
// (as virtio-blk does with its io_uring requests).
class EchoDevice final : public VirtioDevice {
 public:
  explicit EchoDevice(bool ring_reset = false)
      : VirtioDevice(99, "echo", feature_bit(3), 2, 16), ring_reset_(ring_reset) {
    config_bytes() = {1, 2, 3, 4};
  }
  int handled = 0;
  bool hold = false;
  std::vector<std::pair<uint16_t, uint16_t>> held;  // (queue, head)
  std::vector<uint16_t> stopped;                    // on_queue_stop calls

 protected:
  bool supports_queue_reset() const override { return ring_reset_; }
  void on_reset() override { held.clear(); }
  void on_queue_stop(uint16_t index, Queue& q) override {
    stopped.push_back(index);
    for (auto it = held.begin(); it != held.end();) {
      if (it->first != index) {
        ++it;
        continue;
      }
      (void)q.add_used(it->second, 0);
      it = held.erase(it);
    }
  }
  Result<> on_config_write(uint64_t offset, std::span<const uint8_t> in) override {
    if (offset != 0 || in.size() != 1) return skiff::fail("only byte 0 is writable");
    config_bytes()[0] = in[0];
    return {};
  }
  Result<> handle_queue(uint16_t index, Queue& q) override {
    DescriptorChain chain;
    for (;;) {
      bool got = SKIFF_TRY(q.pop_into(chain));
      if (!got) break;
      ++handled;
      if (hold) {
        held.emplace_back(index, chain.head());
        continue;
      }
      SKIFF_TRY_VOID(q.add_used(chain.head(), static_cast<uint32_t>(chain.writable_bytes())));
      signal_used(index);
    }
    return {};
  }

 private:
  bool ring_reset_;
};

struct Sender : pci::MsiSender {
  void send_msi(uint64_t address, uint32_t data) override { sent.push_back({address, data}); }
  std::vector<std::pair<uint64_t, uint32_t>> sent;
};

struct Registrar : pci::IoEventRegistrar {
  Result<> bind_ioevent(uint64_t address, uint32_t len, int fd) override {
    if (fail_next) return skiff::fail("no ioeventfd");
    bound.push_back({address, len, fd});
    return {};
  }
  void unbind_ioevent(uint64_t address, uint32_t len, int fd) override {
    auto it = std::find(bound.begin(), bound.end(), std::tuple{address, len, fd});
    if (it != bound.end()) bound.erase(it);
  }
  std::vector<std::tuple<uint64_t, uint32_t, int>> bound;
  bool fail_next = false;
};

struct Line : IrqLine {
  void set_level(bool high) override { level = high; }
  bool level = false;
};

struct VirtioPciTest : ::testing::Test {
  virtual bool ring_reset() const { return false; }
  void SetUp() override {
    auto echo = std::make_unique<EchoDevice>(ring_reset());
    echo_ = echo.get();
    auto d = VirtioPciDevice::create(std::move(echo), guest.mem, msi, events, &intx, 11);
    ASSERT_TRUE(d) << d.error().what();
    dev = *d;
    slot = *m.root.add_device(dev);
    m.ecam_write(slot, pci::kRegCommand, pci::kCommandMemorySpace | pci::kCommandBusMaster, 2);
    bar = *m.root.bar_mapping(slot, 0);
  }

  uint64_t rd(uint64_t off, size_t n) {
    uint64_t v = 0;
    m.mmio.read(bar + off, std::span(reinterpret_cast<uint8_t*>(&v), n));
    return v;
  }
  void wr(uint64_t off, uint64_t v, size_t n) {
    m.mmio.write(bar + off, std::span(reinterpret_cast<const uint8_t*>(&v), n));
  }
  uint8_t status() { return static_cast<uint8_t>(rd(kCfgDeviceStatus, 1)); }
  void negotiate(uint64_t features) {
    wr(kCfgDeviceStatus, kStatusAcknowledge, 1);
    wr(kCfgDeviceStatus, kStatusAcknowledge | kStatusDriver, 1);
    wr(kCfgDriverFeatureSelect, 0, 4);
    wr(kCfgDriverFeature, static_cast<uint32_t>(features), 4);
    wr(kCfgDriverFeatureSelect, 1, 4);
    wr(kCfgDriverFeature, static_cast<uint32_t>(features >> 32), 4);
    wr(kCfgDeviceStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk, 1);
  }
  void setup_queue(uint16_t q, const FakeDriver& drv, uint16_t vector) {
    wr(kCfgQueueSelect, q, 2);
    wr(kCfgQueueSize, drv.size(), 2);
    wr(kCfgQueueMsixVector, vector, 2);
    // 64-bit fields as two 32-bit halves, as Linux does.
    wr(kCfgQueueDesc, static_cast<uint32_t>(drv.desc_gpa()), 4);
    wr(kCfgQueueDesc + 4, drv.desc_gpa() >> 32, 4);
    wr(kCfgQueueDriver, drv.avail_gpa(), 8);
    wr(kCfgQueueDevice, drv.used_gpa(), 8);
    wr(kCfgQueueEnable, 1, 2);
  }
  void enable_msix() {
    uint16_t cap = *dev->config().find_capability(pci::kCapIdMsix);
    m.ecam_write(slot, cap + 2, pci::kMsixControlEnable, 2);
    for (uint16_t v = 0; v < 3; ++v) {
      wr(kMsixTableOffset + v * 16, 0xfee00000, 4);
      wr(kMsixTableOffset + v * 16 + 8, 0x40 + v, 4);
      wr(kMsixTableOffset + v * 16 + 12, 0, 4);
    }
  }
  // Drains the queue's eventfd; true if a notification arrived.
  bool notified(uint16_t q) { return EventFdValue(dev->queue_eventfd(q)) != 0; }
  static uint64_t EventFdValue(int fd) {
    uint64_t v = 0;
    return ::read(fd, &v, 8) == 8 ? v : 0;
  }

  // The device outlives its last holder (the root in `m`), so what it
  // refers to is declared before `m`.
  FakeGuest guest;
  Sender msi;
  Registrar events;
  Line intx;
  Machine m;
  EchoDevice* echo_ = nullptr;
  std::shared_ptr<VirtioPciDevice> dev;
  uint8_t slot = 0;
  uint64_t bar = 0;
};

const uint64_t kVersion1 = feature_bit(kFeatureVersion1);

TEST_F(VirtioPciTest, IdentifiesAsModernVirtioDevice) {
  EXPECT_EQ(m.ecam_read(slot, pci::kRegVendorId, 2), 0x1af4u);
  EXPECT_EQ(m.ecam_read(slot, pci::kRegDeviceId, 2), 0x1040u + 99);
  EXPECT_GE(m.ecam_read(slot, pci::kRegRevision, 1), 1u);
  EXPECT_EQ(m.ecam_read(slot, pci::kRegInterruptPin, 1), 1u);
  EXPECT_EQ(m.ecam_read(slot, pci::kRegInterruptLine, 1), 11u);
  // BAR 0: 64-bit memory, 32 KiB.
  m.ecam_write(slot, pci::kRegBar0, 0xffffffff);
  EXPECT_EQ(m.ecam_read(slot, pci::kRegBar0), 0xffff8004u);
}

TEST_F(VirtioPciTest, VirtioCapabilitiesDescribeBarZero) {
  std::map<uint8_t, std::tuple<uint8_t, uint32_t, uint32_t, uint16_t>> caps;
  uint16_t at = static_cast<uint16_t>(m.ecam_read(slot, pci::kRegCapabilitiesPtr, 1));
  bool msix = false;
  for (int i = 0; at && i < 48; ++i) {
    uint8_t id = static_cast<uint8_t>(m.ecam_read(slot, at, 1));
    if (id == pci::kCapIdMsix) msix = true;
    if (id == 0x09) {
      uint8_t type = static_cast<uint8_t>(m.ecam_read(slot, at + 3, 1));
      caps[type] = {static_cast<uint8_t>(m.ecam_read(slot, at + 4, 1)),
                    static_cast<uint32_t>(m.ecam_read(slot, at + 8)),
                    static_cast<uint32_t>(m.ecam_read(slot, at + 12)), at};
    }
    at = static_cast<uint16_t>(m.ecam_read(slot, at + 1, 1));
  }
  EXPECT_TRUE(msix);
  ASSERT_EQ(caps.size(), 5u);
  EXPECT_EQ(caps[kVirtioPciCapCommonCfg],
            std::make_tuple(uint8_t{0}, 0x0u, 0x3cu, std::get<3>(caps[1])));
  EXPECT_EQ(std::get<1>(caps[kVirtioPciCapNotifyCfg]), 0x3000u);
  EXPECT_EQ(std::get<2>(caps[kVirtioPciCapNotifyCfg]), 8u);  // 2 queues x 4
  EXPECT_EQ(m.ecam_read(slot, std::get<3>(caps[kVirtioPciCapNotifyCfg]) + 16), 4u);
  EXPECT_EQ(std::get<1>(caps[kVirtioPciCapIsrCfg]), 0x1000u);
  EXPECT_EQ(std::get<1>(caps[kVirtioPciCapDeviceCfg]), 0x2000u);
  EXPECT_EQ(std::get<2>(caps[kVirtioPciCapDeviceCfg]), 4u);
  EXPECT_EQ(rd(kCfgNumQueues, 2), 2u);
}

TEST_F(VirtioPciTest, FeatureWordsAreSelectedBy32BitWindows) {
  wr(kCfgDeviceFeatureSelect, 0, 4);
  uint64_t lo = rd(kCfgDeviceFeature, 4);
  wr(kCfgDeviceFeatureSelect, 1, 4);
  uint64_t hi = rd(kCfgDeviceFeature, 4);
  EXPECT_EQ(lo | hi << 32, echo_->device_features());
  EXPECT_TRUE(lo & feature_bit(3));
  EXPECT_TRUE(hi & 1);  // VERSION_1
  wr(kCfgDeviceFeatureSelect, 7, 4);
  EXPECT_EQ(rd(kCfgDeviceFeature, 4), 0u);
}

TEST_F(VirtioPciTest, NegotiationAcceptsOfferedFeatures) {
  negotiate(kVersion1 | feature_bit(3));
  EXPECT_TRUE(status() & kStatusFeaturesOk);
  EXPECT_EQ(echo_->driver_features(), kVersion1 | feature_bit(3));
  // Features are fixed once FEATURES_OK is set.
  wr(kCfgDriverFeatureSelect, 0, 4);
  wr(kCfgDriverFeature, 0, 4);
  EXPECT_EQ(echo_->driver_features(), kVersion1 | feature_bit(3));
}

TEST_F(VirtioPciTest, FeaturesOkIsRefusedForFeaturesNotOffered) {
  negotiate(kVersion1 | feature_bit(40));
  EXPECT_FALSE(status() & kStatusFeaturesOk);
  wr(kCfgDeviceStatus, 0, 1);
  negotiate(feature_bit(3));  // no VERSION_1: legacy drivers are refused
  EXPECT_FALSE(status() & kStatusFeaturesOk);
}

TEST_F(VirtioPciTest, QueueRoundTripWithMsixInterrupt) {
  FakeDriver drv(guest, 16);
  enable_msix();
  wr(kCfgMsixConfig, 0, 2);
  negotiate(kVersion1);
  setup_queue(1, drv, 2);
  EXPECT_EQ(rd(kCfgQueueNotifyOff, 2), 1u);
  wr(kCfgDeviceStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk, 1);
  ASSERT_EQ(status() & kStatusNeedsReset, 0);
  uint64_t buf = drv.alloc(64);
  drv.add_chain({{buf, 64, true}});
  // The driver's notify (slow path: no ioeventfd in this test) signals the
  // queue's eventfd; the device thread then processes it.
  wr(kNotifyOffset + 4, 1, 2);
  EXPECT_TRUE(notified(1));
  EXPECT_FALSE(notified(0));
  dev->process_queue(1);
  EXPECT_EQ(echo_->handled, 1);
  EXPECT_EQ(drv.used_idx(), 1);
  EXPECT_EQ(drv.used_elem(0).len, 64u);
  ASSERT_EQ(msi.sent.size(), 1u);
  EXPECT_EQ(msi.sent[0], std::make_pair(uint64_t{0xfee00000}, uint32_t{0x42}));
  EXPECT_EQ(dev->isr(), 0);  // MSI-X in use: no ISR bit
}

TEST_F(VirtioPciTest, QueueEnabledWithAddressesOutsideRamNeedsReset) {
  FakeDriver drv(guest, 16);
  enable_msix();
  wr(kCfgMsixConfig, 0, 2);
  negotiate(kVersion1);
  wr(kCfgQueueSelect, 0, 2);
  wr(kCfgQueueDesc, 0xfffffffffff00000ull, 8);  // not RAM
  wr(kCfgQueueDriver, drv.avail_gpa(), 8);
  wr(kCfgQueueDevice, drv.used_gpa(), 8);
  wr(kCfgQueueEnable, 1, 2);
  wr(kCfgDeviceStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk, 1);
  EXPECT_TRUE(status() & kStatusNeedsReset);
  EXPECT_FALSE(echo_->activated());
  // A config-change interrupt told the driver (vector 0 = msix_config).
  ASSERT_FALSE(msi.sent.empty());
  EXPECT_EQ(msi.sent.back().second, 0x40u);
  // Notifications do nothing now.
  drv.add_chain({{drv.alloc(8), 8, true}});
  dev->process_queue(0);
  EXPECT_EQ(echo_->handled, 0);
}

TEST_F(VirtioPciTest, ResetReturnsEveryResource) {
  FakeDriver drv(guest, 8);
  enable_msix();
  wr(kCfgMsixConfig, 1, 2);
  negotiate(kVersion1);
  setup_queue(0, drv, 2);
  wr(kCfgDeviceStatus, 0xf, 1);
  wr(kNotifyOffset, 0, 2);  // a pending notification
  wr(kCfgDeviceStatus, 0, 1);
  EXPECT_EQ(status(), 0);
  EXPECT_FALSE(echo_->activated());
  EXPECT_EQ(echo_->driver_features(), 0u);
  EXPECT_EQ(rd(kCfgMsixConfig, 2), kVirtioMsiNoVector);
  EXPECT_EQ(rd(kCfgQueueSelect, 2), 0u);
  EXPECT_EQ(rd(kCfgQueueSize, 2), 16u);  // back to the maximum
  EXPECT_EQ(rd(kCfgQueueMsixVector, 2), kVirtioMsiNoVector);
  EXPECT_EQ(rd(kCfgQueueEnable, 2), 0u);
  EXPECT_EQ(rd(kCfgQueueDesc, 8), 0u);
  EXPECT_EQ(rd(kCfgQueueDriver, 8), 0u);
  EXPECT_EQ(rd(kCfgQueueDevice, 8), 0u);
  EXPECT_FALSE(notified(0));
  wr(kCfgDriverFeatureSelect, 0, 4);
  EXPECT_EQ(rd(kCfgDriverFeature, 4), 0u);
  // Usable again after reset.
  FakeDriver again(guest, 16);
  negotiate(kVersion1);
  setup_queue(0, again, 0);
  wr(kCfgDeviceStatus, 0xf, 1);
  EXPECT_EQ(status(), 0xf);
}

TEST_F(VirtioPciTest, VectorsBeyondTheTableReadNoVector) {
  wr(kCfgMsixConfig, 3, 2);  // 3 vectors: 0..2
  EXPECT_EQ(rd(kCfgMsixConfig, 2), kVirtioMsiNoVector);
  wr(kCfgMsixConfig, 2, 2);
  EXPECT_EQ(rd(kCfgMsixConfig, 2), 2u);
  wr(kCfgQueueSelect, 1, 2);
  wr(kCfgQueueMsixVector, 0x7fff, 2);
  EXPECT_EQ(rd(kCfgQueueMsixVector, 2), kVirtioMsiNoVector);
}

TEST_F(VirtioPciTest, IntxFallbackSetsIsrAndReadingClearsIt) {
  FakeDriver drv(guest, 16);
  negotiate(kVersion1);
  setup_queue(0, drv, kVirtioMsiNoVector);
  wr(kCfgDeviceStatus, 0xf, 1);
  drv.add_chain({{drv.alloc(16), 16, true}});
  EXPECT_FALSE(m.ecam_read(slot, pci::kRegStatus, 2) & pci::kStatusInterrupt);
  dev->process_queue(0);
  EXPECT_TRUE(intx.level);
  // PCI 3.0 §6.2.3: Status bit 3 shows the pending INTx, through both
  // config mechanisms and any access width covering it.
  EXPECT_TRUE(m.ecam_read(slot, pci::kRegStatus, 2) & pci::kStatusInterrupt);
  EXPECT_TRUE(m.ecam_read(slot, pci::kRegCommand, 4) & (uint32_t{pci::kStatusInterrupt} << 16));
  EXPECT_TRUE(m.ecam_read(slot, pci::kRegStatus, 2) & pci::kStatusCapabilitiesList);
  EXPECT_EQ(rd(kIsrOffset, 1), 1u);
  EXPECT_FALSE(intx.level);
  EXPECT_FALSE(m.ecam_read(slot, pci::kRegStatus, 2) & pci::kStatusInterrupt);
  EXPECT_EQ(rd(kIsrOffset, 1), 0u);
  EXPECT_TRUE(msi.sent.empty());
  // INTx Disable in Command keeps the line low (the ISR bit is still set).
  m.ecam_write(slot, pci::kRegCommand, pci::kCommandMemorySpace | pci::kCommandIntxDisable, 2);
  drv.add_chain({{drv.alloc(16), 16, true}});
  dev->process_queue(0);
  EXPECT_FALSE(intx.level);
  // Clearing INTx Disable with the ISR bit pending asserts the line again;
  // setting it deasserts (PCI 3.0 §6.2.2).
  m.ecam_write(slot, pci::kRegCommand, pci::kCommandMemorySpace, 2);
  EXPECT_TRUE(intx.level);
  m.ecam_write(slot, pci::kRegCommand, pci::kCommandMemorySpace | pci::kCommandIntxDisable, 2);
  EXPECT_FALSE(intx.level);
  EXPECT_EQ(rd(kIsrOffset, 1), 1u);
}

TEST_F(VirtioPciTest, QueueFieldsAreReadOnlyOnceEnabled) {
  FakeDriver drv(guest, 16);
  negotiate(kVersion1);
  setup_queue(0, drv, 1);
  wr(kCfgQueueDesc, 0x5000, 8);
  wr(kCfgQueueSize, 4, 2);
  wr(kCfgQueueMsixVector, 0, 2);
  wr(kCfgQueueEnable, 0, 2);
  EXPECT_EQ(rd(kCfgQueueDesc, 8), drv.desc_gpa());
  EXPECT_EQ(rd(kCfgQueueSize, 2), 16u);
  EXPECT_EQ(rd(kCfgQueueMsixVector, 2), 1u);
  EXPECT_EQ(rd(kCfgQueueEnable, 2), 1u);
}

TEST_F(VirtioPciTest, HostileRegisterAccessesAreIgnored) {
  wr(kCfgQueueSelect, 5, 2);  // no such queue
  EXPECT_EQ(rd(kCfgQueueSize, 2), 0u);
  wr(kCfgQueueEnable, 1, 2);
  wr(kCfgQueueSelect, 0, 2);
  EXPECT_EQ(rd(kCfgQueueEnable, 2), 0u);
  wr(kCfgQueueSize, 0x1234, 4);      // wrong width at a 16-bit field
  wr(kCfgQueueSelect + 1, 0xff, 2);  // unaligned
  wr(kCfgDeviceStatus, 0x0f0f, 2);   // status is one byte
  EXPECT_EQ(rd(kCfgQueueSize, 2), 16u);
  EXPECT_EQ(rd(kCfgQueueSelect, 2), 0u);
  EXPECT_EQ(status(), 0);
  EXPECT_EQ(rd(kCommonCfgSize, 4), 0u);  // past the structure
  EXPECT_EQ(rd(kCfgDeviceFeature + 1, 4), 0u);
  // Device config: inside forwards, outside reads 0 and writes vanish.
  EXPECT_EQ(rd(kDeviceCfgOffset, 4), 0x04030201u);
  wr(kDeviceCfgOffset, 0x77, 1);
  EXPECT_EQ(rd(kDeviceCfgOffset, 1), 0x77u);
  wr(kDeviceCfgOffset + 2, 0x77, 4);
  EXPECT_EQ(rd(kDeviceCfgOffset + 2, 2), 0x0403u);
  EXPECT_EQ(rd(kDeviceCfgOffset + 2, 4), 0u);  // crosses the 4-byte config space
  EXPECT_EQ(rd(kDeviceCfgOffset, 4), 0x04030277u);
  // Notify writes for queues that do not exist or at odd offsets.
  wr(kNotifyOffset + 8, 2, 2);
  wr(kNotifyOffset + 2, 0, 2);
  EXPECT_FALSE(notified(0));
  EXPECT_FALSE(notified(1));
  // PBA is read-only.
  wr(kMsixPbaOffset, ~0ull, 8);
  EXPECT_EQ(rd(kMsixPbaOffset, 8), 0u);
}

TEST_F(VirtioPciTest, PciConfigurationAccessWindowReachesBarZero) {
  uint16_t at = 0;
  for (uint16_t c = static_cast<uint16_t>(m.ecam_read(slot, pci::kRegCapabilitiesPtr, 1)); c;
       c = static_cast<uint16_t>(m.ecam_read(slot, c + 1, 1)))
    if (m.ecam_read(slot, c, 1) == 0x09 && m.ecam_read(slot, c + 3, 1) == kVirtioPciCapPciCfg)
      at = c;
  ASSERT_NE(at, 0);
  m.io_write(slot, at + 4, 0, 1);  // BAR 0
  m.io_write(slot, at + 8, kCfgNumQueues);
  m.io_write(slot, at + 12, 2);
  EXPECT_EQ(m.io_read(slot, at + 16, 2), 2u);
  m.io_write(slot, at + 8, kCfgDeviceStatus);
  m.io_write(slot, at + 12, 1);
  m.io_write(slot, at + 16, kStatusAcknowledge);
  EXPECT_EQ(status(), kStatusAcknowledge);
  // Bad length or unaligned offset: nothing happens.
  m.io_write(slot, at + 12, 3);
  m.io_write(slot, at + 16, 0);
  EXPECT_EQ(status(), kStatusAcknowledge);
  m.io_write(slot, at + 8, kCfgQueueSelect + 1);
  m.io_write(slot, at + 12, 2);
  m.io_write(slot, at + 16, 1);
  EXPECT_EQ(rd(kCfgQueueSelect, 2), 0u);
}

TEST_F(VirtioPciTest, NotificationsFollowTheBar) {
  // Mapped in SetUp: one ioeventfd per queue at its notify address.
  ASSERT_EQ(events.bound.size(), 2u);
  EXPECT_EQ(events.bound[0], std::make_tuple(bar + 0x3000, 2u, dev->queue_eventfd(0)));
  EXPECT_EQ(events.bound[1], std::make_tuple(bar + 0x3004, 2u, dev->queue_eventfd(1)));
  uint64_t moved = 0xd8000000;
  m.ecam_write(slot, pci::kRegBar0, moved);
  m.ecam_write(slot, pci::kRegBar0 + 4, 0);
  ASSERT_EQ(events.bound.size(), 2u);
  EXPECT_EQ(std::get<0>(events.bound[0]), moved + 0x3000);
  m.ecam_write(slot, pci::kRegCommand, 0, 2);
  EXPECT_TRUE(events.bound.empty());
  // Without ioeventfd support the MMIO path still notifies.
  events.fail_next = true;
  m.ecam_write(slot, pci::kRegCommand, pci::kCommandMemorySpace, 2);
  EXPECT_TRUE(events.bound.empty());
  m.mmio.write(moved + 0x3004,
               std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&moved), 2));
  EXPECT_TRUE(notified(1));
}

// A driver writing random values of random sizes at random config and BAR
// offsets: nothing crashes, identity stays, and a reset brings the device
// back to a state a correct driver can use.
TEST_F(VirtioPciTest, RandomHostileAccessesKeepIdentityAndResetRecovers) {
  std::mt19937_64 rng(1234);
  const size_t sizes[] = {1, 2, 4, 8};  // what a KVM exit can carry
  for (int i = 0; i < 20000; ++i) {
    uint64_t v = rng();
    size_t n = sizes[rng() % 4];
    switch (rng() % 4) {
      case 0: {  // ECAM, including offsets past 4 KiB and other functions
        uint64_t off = rng() % 0x9000;
        std::vector<uint8_t> buf(n);
        std::memcpy(buf.data(), &v, std::min<size_t>(n, 8));
        if (rng() % 2)
          m.mmio.write(Machine::ecam_addr(slot, 0) + off, buf);
        else
          m.mmio.read(Machine::ecam_addr(slot, 0) + off, buf);
        break;
      }
      case 1:  // common config, mostly status and queue fields
        if (rng() % 2)
          dev->bar_write(0, rng() % 0x40, std::span(reinterpret_cast<const uint8_t*>(&v), n));
        else
          dev->bar_read(0, rng() % 0x40, std::span(reinterpret_cast<uint8_t*>(&v), n));
        break;
      case 2:  // anywhere in (and past) BAR 0
        if (rng() % 2)
          dev->bar_write(0, rng() % 0x9000, std::span(reinterpret_cast<const uint8_t*>(&v), n));
        else
          dev->bar_read(0, rng() % 0x9000, std::span(reinterpret_cast<uint8_t*>(&v), n));
        break;
      case 3:
        dev->process_queue(static_cast<uint16_t>(rng() % 3));
        break;
    }
  }
  EXPECT_EQ(m.ecam_read(slot, pci::kRegVendorId), 0x10a31af4u);
  // Recover: decode on at the placed address, device reset, a clean setup.
  m.ecam_write(slot, pci::kRegBar0, 0xc0000000);
  m.ecam_write(slot, pci::kRegBar0 + 4, 0);
  m.ecam_write(slot, pci::kRegCommand, pci::kCommandMemorySpace, 2);
  bar = *m.root.bar_mapping(slot, 0);
  wr(kCfgDeviceStatus, 0, 1);
  EXPECT_EQ(status(), 0);
  std::memset(guest.ram.data(), 0, guest.ram.size());
  FakeDriver drv(guest, 16);
  negotiate(kVersion1);
  setup_queue(0, drv, kVirtioMsiNoVector);
  wr(kCfgDeviceStatus, 0xf, 1);
  ASSERT_EQ(status(), 0xf);
  int before = echo_->handled;
  drv.add_chain({{drv.alloc(32), 32, true}});
  dev->process_queue(0);
  EXPECT_EQ(echo_->handled, before + 1);
}

TEST_F(VirtioPciTest, MachineResetUnbindsAndResetsTheDevice) {
  negotiate(kVersion1);
  m.root.reset();
  EXPECT_EQ(dev->device().status(), 0);
  EXPECT_TRUE(events.bound.empty());
  EXPECT_FALSE(dev->msix().enabled());
}

// --- Virtqueue reset (VIRTIO_F_RING_RESET, virtio 1.2 §2.6.1, §4.1.4.3)

struct VirtioPciRingResetTest : VirtioPciTest {
  bool ring_reset() const override { return true; }
  static constexpr uint64_t kRingReset = uint64_t{1} << kFeatureRingReset;
  static constexpr uint8_t kRunning = 0xf;  // ACK | DRIVER | FEATURES_OK | DRIVER_OK
  void reset_queue(uint16_t q) {
    wr(kCfgQueueSelect, q, 2);
    wr(kCfgQueueReset, 1, 2);
  }
};

TEST_F(VirtioPciTest, RingResetIsNotOfferedByDevicesThatCannotDoIt) {
  EXPECT_FALSE(echo_->device_features() & feature_bit(kFeatureRingReset));
}

// skiff's devices that opt in offer it behind virtio-pci (not vhost-user).
TEST(VirtioPciDevices, RngOffersRingResetOnlyBehindPci) {
  auto rng = VirtioRng::create(std::nullopt);
  ASSERT_TRUE(rng);
  EXPECT_FALSE((*rng)->device_features() & feature_bit(kFeatureRingReset));
  FakeGuest guest;
  Sender msi;
  Registrar events;
  auto d = VirtioPciDevice::create(std::move(*rng), guest.mem, msi, events, nullptr, 0);
  ASSERT_TRUE(d);
  EXPECT_TRUE((*d)->device().device_features() & feature_bit(kFeatureRingReset));
}

TEST_F(VirtioPciRingResetTest, IsOfferedAndNegotiable) {
  wr(kCfgDeviceFeatureSelect, 1, 4);
  EXPECT_TRUE(rd(kCfgDeviceFeature, 4) & (1u << (kFeatureRingReset - 32)));
  negotiate(kVersion1 | kRingReset);
  EXPECT_TRUE(status() & kStatusFeaturesOk);
  EXPECT_EQ(rd(kCfgQueueReset, 2), 0u);
  EXPECT_EQ(rd(kCfgQueueNotifyData, 2), 0u);
}

TEST_F(VirtioPciRingResetTest, ResetsOneQueueWhileTheOtherRunsAndReenablesItWithNewRings) {
  FakeDriver d0(guest, 16);
  FakeDriver d1(guest, 16, FakeGuest::kRamBase + 0x20000);
  enable_msix();
  negotiate(kVersion1 | kRingReset);
  setup_queue(0, d0, 0);
  setup_queue(1, d1, 1);
  wr(kCfgDeviceStatus, kRunning, 1);
  ASSERT_EQ(status(), kRunning);
  d0.add_chain({{d0.alloc(8), 8, true}});
  d1.add_chain({{d1.alloc(8), 8, true}});
  dev->process_queue(0);
  dev->process_queue(1);
  ASSERT_EQ(d0.used_idx(), 1);
  ASSERT_EQ(d1.used_idx(), 1);

  // A notification for queue 1 is pending when the driver resets it.
  d1.add_chain({{d1.alloc(8), 8, true}});
  wr(kNotifyOffset + 4, 1, 2);
  reset_queue(1);
  // §4.1.4.3.2: done when queue_reset and queue_enable both read 0; every
  // field is back to its power-on value.
  EXPECT_EQ(rd(kCfgQueueReset, 2), 0u);
  EXPECT_EQ(rd(kCfgQueueEnable, 2), 0u);
  EXPECT_EQ(rd(kCfgQueueSize, 2), 16u);
  EXPECT_EQ(rd(kCfgQueueMsixVector, 2), kVirtioMsiNoVector);
  EXPECT_EQ(rd(kCfgQueueDesc, 8), 0u);
  EXPECT_EQ(rd(kCfgQueueDriver, 8), 0u);
  EXPECT_EQ(rd(kCfgQueueDevice, 8), 0u);
  EXPECT_FALSE(notified(1)) << "the old ring's notification was dropped";
  EXPECT_EQ(status(), kRunning) << "a queue reset is not a device reset";
  EXPECT_EQ(echo_->stopped, std::vector<uint16_t>{1});
  // The reset queue does nothing: the old ring is not read again.
  dev->process_queue(1);
  EXPECT_EQ(d1.used_idx(), 1);
  // Queue 0 never stopped.
  d0.add_chain({{d0.alloc(8), 8, true}});
  dev->process_queue(0);
  EXPECT_EQ(d0.used_idx(), 2);

  // §2.6.1.2: set up again with a different size, rings and vector.
  FakeDriver d2(guest, 8, FakeGuest::kRamBase + 0x40000);
  msi.sent.clear();
  setup_queue(1, d2, 2);
  EXPECT_EQ(rd(kCfgQueueEnable, 2), 1u);
  EXPECT_EQ(rd(kCfgQueueSize, 2), 8u);
  EXPECT_EQ(rd(kCfgQueueDesc, 8), d2.desc_gpa());
  d2.add_chain({{d2.alloc(24), 24, true}});
  dev->process_queue(1);
  EXPECT_EQ(d2.used_idx(), 1) << "indices restart at 0 on the new ring";
  EXPECT_EQ(d2.used_elem(0).len, 24u);
  EXPECT_EQ(d1.used_idx(), 1) << "nothing more in the old ring";
  ASSERT_EQ(msi.sent.size(), 1u);
  EXPECT_EQ(msi.sent[0].second, 0x42u) << "the new vector";
  EXPECT_EQ(status(), kRunning);
}

TEST_F(VirtioPciRingResetTest, InFlightRequestsCompleteBeforeTheQueueResets) {
  FakeDriver d0(guest, 16);
  negotiate(kVersion1 | kRingReset);
  setup_queue(0, d0, kVirtioMsiNoVector);
  wr(kCfgDeviceStatus, kRunning, 1);
  echo_->hold = true;
  d0.add_chain({{d0.alloc(8), 8, true}});
  d0.add_chain({{d0.alloc(8), 8, true}});
  dev->process_queue(0);
  ASSERT_EQ(echo_->held.size(), 2u);
  EXPECT_EQ(d0.used_idx(), 0);
  reset_queue(0);
  // Both requests reached the old used ring before the reset completed.
  EXPECT_EQ(d0.used_idx(), 2);
  EXPECT_TRUE(echo_->held.empty());
  EXPECT_EQ(rd(kCfgQueueEnable, 2), 0u);
}

TEST_F(VirtioPciRingResetTest, ReenabledQueueWithRingsOutsideRamNeedsReset) {
  FakeDriver d0(guest, 16);
  enable_msix();
  wr(kCfgMsixConfig, 0, 2);
  negotiate(kVersion1 | kRingReset);
  setup_queue(0, d0, 1);
  wr(kCfgDeviceStatus, kRunning, 1);
  reset_queue(0);
  wr(kCfgQueueDesc, 0xfffffffffff00000ull, 8);  // not RAM
  wr(kCfgQueueDriver, d0.avail_gpa(), 8);
  wr(kCfgQueueDevice, d0.used_gpa(), 8);
  wr(kCfgQueueEnable, 1, 2);
  EXPECT_TRUE(status() & kStatusNeedsReset);
  ASSERT_FALSE(msi.sent.empty());
  EXPECT_EQ(msi.sent.back().second, 0x40u) << "config-change interrupt";
  dev->process_queue(0);
  EXPECT_EQ(echo_->handled, 0);
  // A device reset recovers.
  wr(kCfgDeviceStatus, 0, 1);
  negotiate(kVersion1 | kRingReset);
  setup_queue(0, d0, 1);
  wr(kCfgDeviceStatus, kRunning, 1);
  EXPECT_EQ(status(), kRunning);
}

TEST_F(VirtioPciRingResetTest, HostileResetsAreIgnoredOrHarmless) {
  FakeDriver d0(guest, 16);
  // Before FEATURES_OK: ignored, the queue keeps its configuration.
  wr(kCfgQueueSelect, 0, 2);
  wr(kCfgQueueDesc, d0.desc_gpa(), 8);
  wr(kCfgQueueReset, 1, 2);
  EXPECT_EQ(rd(kCfgQueueDesc, 8), d0.desc_gpa());
  negotiate(kVersion1 | kRingReset);
  setup_queue(0, d0, kVirtioMsiNoVector);
  // After FEATURES_OK but before DRIVER_OK: the queue goes back to its
  // defaults, nothing runs, nothing breaks.
  reset_queue(0);
  EXPECT_EQ(rd(kCfgQueueEnable, 2), 0u);
  setup_queue(0, d0, kVirtioMsiNoVector);
  wr(kCfgDeviceStatus, kRunning, 1);
  ASSERT_EQ(status(), kRunning);
  // Out-of-range queues, values other than 1, other widths: ignored.
  for (uint16_t q : {uint16_t{2}, uint16_t{0x7fff}, uint16_t{0xffff}}) reset_queue(q);
  wr(kCfgQueueSelect, 0, 2);
  for (uint64_t v : {0ull, 2ull, 0xffffull}) wr(kCfgQueueReset, v, 2);
  wr(kCfgQueueReset, 1, 1);
  wr(kCfgQueueReset - 2, 0x00010000, 4);  // queue_notify_data + queue_reset as a dword
  EXPECT_EQ(rd(kCfgQueueEnable, 2), 1u);
  EXPECT_EQ(status(), kRunning);
  // Resetting twice, enabling a reset queue with nothing set up (desc 0 is
  // not RAM here), or enabling a queue that is enabled: no crash.
  reset_queue(0);
  reset_queue(0);
  wr(kCfgQueueEnable, 1, 2);
  EXPECT_TRUE(status() & kStatusNeedsReset);
  reset_queue(0);
  wr(kCfgQueueEnable, 1, 2);
  dev->process_queue(0);
  EXPECT_EQ(echo_->handled, 0);
}

TEST_F(VirtioPciRingResetTest, WithoutNegotiationQueueResetIsIgnored) {
  FakeDriver d0(guest, 16);
  negotiate(kVersion1);
  setup_queue(0, d0, kVirtioMsiNoVector);
  wr(kCfgDeviceStatus, kRunning, 1);
  reset_queue(0);
  EXPECT_EQ(rd(kCfgQueueEnable, 2), 1u);
  EXPECT_TRUE(echo_->stopped.empty());
  // Queue fields stay frozen after DRIVER_OK.
  wr(kCfgQueueSelect, 1, 2);
  wr(kCfgQueueDesc, 0x5000, 8);
  EXPECT_EQ(rd(kCfgQueueDesc, 8), 0u);
  d0.add_chain({{d0.alloc(8), 8, true}});
  dev->process_queue(0);
  EXPECT_EQ(d0.used_idx(), 1);
}

TEST_F(VirtioPciRingResetTest, RandomResetAndEnableSequencesNeverCrash) {
  std::mt19937_64 rng(99);
  FakeDriver d0(guest, 16);
  FakeDriver d1(guest, 16, FakeGuest::kRamBase + 0x20000);
  negotiate(kVersion1 | kRingReset);
  setup_queue(0, d0, kVirtioMsiNoVector);
  setup_queue(1, d1, kVirtioMsiNoVector);
  wr(kCfgDeviceStatus, kRunning, 1);
  const uint64_t fields[] = {kCfgQueueSelect, kCfgQueueSize,   kCfgQueueMsixVector,
                             kCfgQueueEnable, kCfgQueueReset,  kCfgQueueDesc,
                             kCfgQueueDriver, kCfgQueueDevice, kCfgQueueNotifyData};
  for (int i = 0; i < 20000; ++i) {
    uint64_t off = fields[rng() % std::size(fields)];
    uint64_t v = rng() % 4 == 0 ? rng() : rng() % 3;
    if (off == kCfgQueueDesc || off == kCfgQueueDriver || off == kCfgQueueDevice) {
      uint64_t ring = rng() % 2 ? d0.desc_gpa() : d1.desc_gpa();
      wr(off, rng() % 4 ? ring + 16 * (rng() % 64) : v, 8);
    } else {
      wr(off, v, 2);
    }
    switch (rng() % 8) {
      case 0:
        echo_->hold = !echo_->hold;
        break;
      case 1:
        (rng() % 2 ? d0 : d1).add_chain({{d0.alloc(8), 8, true}});
        break;
      case 2:
        dev->process_queue(static_cast<uint16_t>(rng() % 2));
        break;
      case 3:
        if (rng() % 50 == 0) {
          wr(kCfgDeviceStatus, 0, 1);
          negotiate(kVersion1 | kRingReset);
          wr(kCfgDeviceStatus, kRunning, 1);
        }
        break;
      default:
        break;
    }
  }
  // Whatever happened, a device reset gives a working device back.
  wr(kCfgDeviceStatus, 0, 1);
  std::memset(guest.ram.data(), 0, guest.ram.size());
  FakeDriver clean(guest, 16);
  negotiate(kVersion1 | kRingReset);
  setup_queue(0, clean, kVirtioMsiNoVector);
  wr(kCfgDeviceStatus, kRunning, 1);
  ASSERT_EQ(status(), kRunning);
  echo_->hold = false;
  clean.add_chain({{clean.alloc(8), 8, true}});
  dev->process_queue(0);
  EXPECT_EQ(clean.used_idx(), 1);
}

}  // namespace
}  // namespace skiff::virtio

#include "virtio/device.h"

#include <gtest/gtest.h>

#include "virtio/fake_driver.h"

namespace skiff::virtio {
namespace {

using testing::FakeDriver;
using testing::FakeGuest;

// A minimal device: completes every chain with its writable length, and
// has a 4-byte config space whose byte 0 is writable.
class EchoDevice final : public VirtioDevice {
 public:
  static constexpr unsigned kFeatureX = 3;
  EchoDevice() : VirtioDevice(99, "echo", feature_bit(kFeatureX), 2, 16) {
    config_bytes() = {1, 2, 3, 4};
  }
  int handled = 0;
  int activations = 0;
  int resets = 0;
  void change_config(uint8_t v) { update_config(std::span(&v, 1), 1); }

 protected:
  Result<> on_activate() override {
    ++activations;
    return {};
  }
  void on_reset() override { ++resets; }
  Result<> on_config_write(uint64_t offset, std::span<const uint8_t> in) override {
    if (offset != 0 || in.size() != 1) return skiff::fail("only byte 0 is writable");
    config_bytes()[0] = in[0];
    return {};
  }
  Result<> handle_queue(uint16_t index, Queue& q) override {
    DescriptorChain chain;
    bool any = false;
    for (;;) {
      bool got = SKIFF_TRY(q.pop_into(chain));
      if (!got) break;
      ++handled;
      SKIFF_TRY_VOID(q.add_used(chain.head(), static_cast<uint32_t>(chain.writable_bytes())));
      any = true;
    }
    if (any) signal_used(index);
    return {};
  }
};

struct DeviceFixture : ::testing::Test {
  DeviceFixture() : driver(guest, 16) {
    dev.set_memory(&guest.mem);
    dev.set_interrupt([this](InterruptKind k, uint16_t q) {
      if (k == InterruptKind::kUsedBuffer)
        used_irqs.push_back(q);
      else
        ++config_irqs;
    });
  }
  // The §3.1.1 initialisation sequence with queue 0 set up.
  void bring_up(uint64_t features = kCommonFeatures) {
    dev.set_status(kStatusAcknowledge);
    dev.set_status(kStatusAcknowledge | kStatusDriver);
    dev.set_driver_features(features);
    dev.set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    ASSERT_TRUE(dev.status() & kStatusFeaturesOk);
    driver.configure(*dev.queue(0));
    dev.set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }
  FakeGuest guest;
  FakeDriver driver;
  EchoDevice dev;
  std::vector<uint16_t> used_irqs;
  int config_irqs = 0;
};

TEST_F(DeviceFixture, OffersCommonFeaturesAndItsOwn) {
  EXPECT_EQ(dev.device_features() & kCommonFeatures, kCommonFeatures);
  EXPECT_TRUE(dev.device_features() & feature_bit(EchoDevice::kFeatureX));
}

TEST_F(DeviceFixture, RefusesFeaturesThatWereNotOffered) {
  dev.set_status(kStatusAcknowledge | kStatusDriver);
  dev.set_driver_features(kCommonFeatures | feature_bit(40));
  dev.set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_FALSE(dev.status() & kStatusFeaturesOk);
}

TEST_F(DeviceFixture, RefusesLegacyDriverWithoutVersion1) {
  dev.set_status(kStatusAcknowledge | kStatusDriver);
  dev.set_driver_features(feature_bit(kFeatureEventIdx));
  dev.set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_FALSE(dev.status() & kStatusFeaturesOk);
}

TEST_F(DeviceFixture, FeaturesAreFrozenAfterFeaturesOk) {
  bring_up(feature_bit(kFeatureVersion1));
  dev.set_driver_features(kCommonFeatures);
  EXPECT_EQ(dev.driver_features(), feature_bit(kFeatureVersion1));
}

TEST_F(DeviceFixture, DriverOkWithoutFeaturesOkDoesNotActivate) {
  dev.set_status(kStatusAcknowledge | kStatusDriver | kStatusDriverOk);
  EXPECT_FALSE(dev.activated());
  EXPECT_EQ(dev.activations, 0);
}

TEST_F(DeviceFixture, ProcessesQueueAndInterruptsDriver) {
  bring_up();
  ASSERT_TRUE(dev.activated());
  EXPECT_EQ(dev.activations, 1);
  uint16_t h = driver.add_chain({{driver.alloc(32), 32, true}});
  dev.process_queue(0);
  EXPECT_EQ(dev.handled, 1);
  EXPECT_EQ(driver.used_idx(), 1);
  EXPECT_EQ(driver.used_elem(0).id, h);
  EXPECT_EQ(driver.used_elem(0).len, 32u);
  EXPECT_EQ(used_irqs, std::vector<uint16_t>{0});
}

TEST_F(DeviceFixture, ActivationFailureSetsNeedsReset) {
  dev.set_status(kStatusAcknowledge | kStatusDriver);
  dev.set_driver_features(kCommonFeatures);
  dev.set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  driver.configure(*dev.queue(0));
  dev.queue(0)->set_used_ring(0x10);  // not RAM
  dev.set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_FALSE(dev.activated());
  EXPECT_TRUE(dev.needs_reset());
}

TEST_F(DeviceFixture, ViolationSetsNeedsResetStopsProcessingAndRecoversAfterReset) {
  bring_up();
  // A looping chain: 0 -> 1 -> 0.
  uint64_t a = driver.alloc(8);
  driver.set_desc(0, {a, 8, kDescFlagNext, 1});
  driver.set_desc(1, {a, 8, kDescFlagNext, 0});
  driver.publish(0);
  dev.process_queue(0);
  EXPECT_TRUE(dev.needs_reset());
  EXPECT_TRUE(dev.status() & kStatusDriverOk);  // the driver's bits stay
  EXPECT_EQ(config_irqs, 1);
  EXPECT_TRUE(used_irqs.empty());

  // Valid work is ignored until reset, and a second notify does not log or
  // interrupt again.
  driver.add_chain({{driver.alloc(8), 8, true}});
  dev.process_queue(0);
  EXPECT_EQ(dev.handled, 0);
  EXPECT_EQ(config_irqs, 1);
  // The driver cannot clear NEEDS_RESET by writing status.
  dev.set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_TRUE(dev.needs_reset());

  // Reset and a fresh initialisation bring it back.
  dev.set_status(0);
  EXPECT_EQ(dev.status(), 0);
  EXPECT_EQ(dev.resets, 1);
  EXPECT_FALSE(dev.activated());
  driver.restart();
  bring_up();
  ASSERT_TRUE(dev.activated());
  driver.add_chain({{driver.alloc(8), 8, true}});
  dev.process_queue(0);
  EXPECT_EQ(dev.handled, 1);
  EXPECT_FALSE(dev.needs_reset());
}

TEST_F(DeviceFixture, IgnoresNotificationsForUnknownOrUnreadyQueues) {
  bring_up();
  dev.process_queue(1);  // never made ready
  dev.process_queue(7);  // does not exist
  EXPECT_FALSE(dev.needs_reset());
  EXPECT_EQ(dev.queue(7), nullptr);
}

TEST_F(DeviceFixture, ConfigAccessIsBoundsChecked) {
  std::array<uint8_t, 4> out{};
  ASSERT_TRUE(dev.read_config(0, out));
  EXPECT_EQ(out, (std::array<uint8_t, 4>{1, 2, 3, 4}));
  std::array<uint8_t, 2> two{};
  ASSERT_TRUE(dev.read_config(2, two));
  EXPECT_EQ(two[0], 3);
  EXPECT_FALSE(dev.read_config(3, two));
  EXPECT_FALSE(dev.read_config(UINT64_MAX, two));
  EXPECT_FALSE(dev.read_config(5, std::span<uint8_t>()));
  uint8_t v = 9;
  EXPECT_TRUE(dev.write_config(0, std::span(&v, 1)));
  EXPECT_FALSE(dev.write_config(1, std::span(&v, 1)));  // device refuses
  EXPECT_FALSE(dev.write_config(4, std::span(&v, 1)));  // out of bounds
  ASSERT_TRUE(dev.read_config(0, out));
  EXPECT_EQ(out[0], 9);
}

TEST_F(DeviceFixture, ConfigChangeBumpsGenerationAndInterruptsOnceRunning) {
  uint32_t gen = dev.config_generation();
  dev.change_config(7);
  EXPECT_EQ(dev.config_generation(), gen + 1);
  EXPECT_EQ(config_irqs, 0);  // driver not up yet
  bring_up();
  dev.change_config(8);
  EXPECT_EQ(config_irqs, 1);
  std::array<uint8_t, 1> b{};
  ASSERT_TRUE(dev.read_config(1, b));
  EXPECT_EQ(b[0], 8);
}

}  // namespace
}  // namespace skiff::virtio

#include "devices/bus.h"

#include <gtest/gtest.h>

#include <vector>

namespace skiff {
namespace {

struct Recorder : BusDevice {
  std::vector<uint64_t> offsets;
  void read(uint64_t offset, std::span<uint8_t> data) override {
    offsets.push_back(offset);
    for (auto& b : data) b = 0x42;
  }
  void write(uint64_t offset, std::span<const uint8_t>) override { offsets.push_back(offset); }
};

TEST(Bus, DeviceSeesOffsetFromItsBase) {
  Bus bus("pio");
  auto dev = std::make_shared<Recorder>();
  ASSERT_TRUE(bus.insert(dev, 0x3f8, 8));
  uint8_t b = 0;
  EXPECT_TRUE(bus.read(0x3fd, std::span(&b, 1)));
  EXPECT_EQ(b, 0x42);
  ASSERT_EQ(dev->offsets.size(), 1u);
  EXPECT_EQ(dev->offsets[0], 5u);
}

TEST(Bus, UnclaimedReadReturnsAllOnes) {
  Bus bus("pio");
  uint8_t buf[4] = {};
  EXPECT_FALSE(bus.read(0x1234, buf));
  for (auto b : buf) EXPECT_EQ(b, 0xff);
}

TEST(Bus, RefusesZeroSizedAndOverlappingRanges) {
  Bus bus("mmio");
  auto dev = std::make_shared<Recorder>();
  EXPECT_FALSE(bus.insert(dev, 0x1000, 0));
  ASSERT_TRUE(bus.insert(dev, 0x1000, 0x100));
  EXPECT_FALSE(bus.insert(dev, 0x10ff, 1));
  EXPECT_FALSE(bus.insert(dev, 0xf00, 0x101));
  EXPECT_TRUE(bus.insert(dev, 0x1100, 1));
  EXPECT_FALSE(bus.insert(dev, UINT64_MAX, 2));
}

TEST(Bus, AccessStraddlingTheDeviceEndIsUnclaimed) {
  Bus bus("mmio");
  auto dev = std::make_shared<Recorder>();
  ASSERT_TRUE(bus.insert(dev, 0x1000, 4));
  uint8_t buf[4];
  EXPECT_FALSE(bus.read(0x1002, buf));
  EXPECT_TRUE(dev->offsets.empty());
}

}  // namespace
}  // namespace skiff

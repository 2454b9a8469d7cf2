#include "devices/pci/pci_config.h"

#include <gtest/gtest.h>

#include "devices/pci/pci_test_util.h"

namespace skiff::pci {
namespace {

TEST(PciConfigSpace, CapabilityListIsWalkableThroughEcam) {
  testing::Machine m;
  auto dev = std::make_shared<testing::FakeDevice>();
  uint16_t a = *dev->config().add_capability(0x09, 16);
  uint16_t b = *dev->config().add_capability(0x11, 12);
  uint16_t c = *dev->config().add_capability(0x05, 10);
  uint8_t slot = *m.root.add_device(dev);
  EXPECT_TRUE(m.ecam_read(slot, kRegStatus, 2) & kStatusCapabilitiesList);
  std::vector<std::pair<uint8_t, uint16_t>> seen;
  uint16_t at = static_cast<uint16_t>(m.ecam_read(slot, kRegCapabilitiesPtr, 1));
  for (int i = 0; at != 0 && i < 48; ++i) {
    EXPECT_EQ(at % 4, 0);
    EXPECT_GE(at, 0x40);
    seen.push_back({static_cast<uint8_t>(m.io_read(slot, at, 1)), at});
    at = static_cast<uint16_t>(m.io_read(slot, at + 1, 1));
  }
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], (std::pair<uint8_t, uint16_t>{0x09, a}));
  EXPECT_EQ(seen[1], (std::pair<uint8_t, uint16_t>{0x11, b}));
  EXPECT_EQ(seen[2], (std::pair<uint8_t, uint16_t>{0x05, c}));
  EXPECT_EQ(b, a + 16);
  EXPECT_EQ(c, b + 12);
  EXPECT_EQ(dev->config().find_capability(0x11), b);
  EXPECT_FALSE(dev->config().find_capability(0x10));
  // The guest cannot rewrite the list.
  m.ecam_write(slot, a + 1, 0x44, 1);
  EXPECT_EQ(m.ecam_read(slot, a + 1, 1), b);
}

TEST(PciConfigSpace, CapabilitiesThatDoNotFitAreRefused) {
  PciConfigSpace cs(PciIds{});
  EXPECT_FALSE(cs.add_capability(0x09, 200));  // 0x40 + 200 > 256
  EXPECT_TRUE(cs.add_capability(0x09, 180));
  EXPECT_FALSE(cs.add_capability(0x09, 32));  // would pass 256 bytes
  EXPECT_FALSE(cs.add_capability(0x09, 1));
}

TEST(PciConfigSpace, LoopingCapabilityListEndsTheWalk) {
  PciConfigSpace cs(PciIds{});
  uint16_t a = *cs.add_capability(0x09, 16);
  cs.set_u8(static_cast<uint16_t>(a + 1), static_cast<uint8_t>(a));  // points at itself
  EXPECT_FALSE(cs.find_capability(0x11));
}

TEST(PciConfigSpace, BadBarDeclarationsAreRefused) {
  PciConfigSpace cs(PciIds{});
  EXPECT_FALSE(cs.add_memory_bar(6, 4096, false, false));
  EXPECT_FALSE(cs.add_memory_bar(5, 4096, true, false));  // 64-bit needs 5 and 6
  EXPECT_FALSE(cs.add_memory_bar(0, 3 * 4096, false, false));
  EXPECT_FALSE(cs.add_memory_bar(0, 16, false, false));
  ASSERT_TRUE(cs.add_memory_bar(0, 4096, true, false));
  EXPECT_FALSE(cs.add_memory_bar(1, 4096, false, false));  // upper half of BAR 0
  EXPECT_FALSE(cs.add_memory_bar(0, 4096, false, false));
}

TEST(PciConfigSpace, SetBarAddressAlignsDown) {
  PciConfigSpace cs(PciIds{});
  ASSERT_TRUE(cs.add_memory_bar(0, 0x8000, false, false));
  cs.set_bar_address(0, 0xc0001234);
  EXPECT_EQ(cs.bar_address(0), 0xc0000000u);
}

}  // namespace
}  // namespace skiff::pci

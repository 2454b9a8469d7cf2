// Ged: the GED event register is read-to-clear and drives a level-triggered
// line that stays up until the guest's _EVT reads the register.
#include "devices/ged.h"

#include <gtest/gtest.h>

#include "devices/fakes.h"

namespace skiff {
namespace {

uint8_t read_reg(Ged& g) {
  uint8_t b = 0xaa;
  g.read(0, std::span<uint8_t>(&b, 1));
  return b;
}

TEST(Ged, PowerButtonRaisesLineAndSetsEventBit) {
  testing::FakeIrqLine irq;
  Ged g(irq);
  EXPECT_EQ(read_reg(g), 0);
  EXPECT_TRUE(irq.history.empty());
  g.trigger(Ged::kEventPowerButton);
  EXPECT_TRUE(irq.level);
  EXPECT_EQ(g.pending(), Ged::kEventPowerButton);
  EXPECT_EQ(g.triggered(), 1u);
}

TEST(Ged, ReadReturnsEventsOnceAndLowersLine) {
  testing::FakeIrqLine irq;
  Ged g(irq);
  g.trigger(Ged::kEventPowerButton);
  EXPECT_EQ(read_reg(g), Ged::kEventPowerButton);
  EXPECT_FALSE(irq.level);
  EXPECT_EQ(read_reg(g), 0) << "a second read must not report the event again";
  EXPECT_EQ(irq.history, (std::vector<bool>{true, false}));
}

TEST(Ged, SecondEventBeforeReadKeepsLineHighWithoutNewEdge) {
  testing::FakeIrqLine irq;
  Ged g(irq);
  g.trigger(Ged::kEventPowerButton);
  g.trigger(0x2);
  EXPECT_EQ(irq.history, (std::vector<bool>{true}));
  EXPECT_EQ(read_reg(g), Ged::kEventPowerButton | 0x2);
  EXPECT_EQ(g.triggered(), 2u);
}

TEST(Ged, ResetDropsPendingEventsAndLowersLine) {
  testing::FakeIrqLine irq;
  Ged g(irq);
  g.trigger(Ged::kEventPowerButton);
  g.reset();
  EXPECT_FALSE(irq.level);
  EXPECT_EQ(read_reg(g), 0);
}

TEST(Ged, HostileAccessesAreHarmless) {
  testing::FakeIrqLine irq;
  Ged g(irq);
  g.trigger(Ged::kEventPowerButton);
  uint8_t wide[8];
  std::fill(std::begin(wide), std::end(wide), 0xff);
  g.read(5, wide);  // past the register: zeros, event kept
  for (uint8_t b : wide) EXPECT_EQ(b, 0);
  EXPECT_EQ(g.pending(), Ged::kEventPowerButton);
  const uint8_t junk[4] = {0xff, 0xff, 0xff, 0xff};
  g.write(0, junk);  // writes cannot fake or clear events
  EXPECT_EQ(g.pending(), Ged::kEventPowerButton);
  g.read(0, std::span<uint8_t>());  // zero-length read changes nothing
  EXPECT_EQ(g.pending(), Ged::kEventPowerButton);
  g.read(0, wide);  // a wide read returns the bits in byte 0
  EXPECT_EQ(wide[0], Ged::kEventPowerButton);
  EXPECT_EQ(wide[1], 0);
}

}  // namespace
}  // namespace skiff

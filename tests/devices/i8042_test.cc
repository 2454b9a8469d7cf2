#include "devices/i8042.h"

#include <gtest/gtest.h>

#include "devices/fakes.h"

namespace skiff {
namespace {

using testing::FakeVmEvents;

constexpr uint64_t kData = 0;    // port 0x60
constexpr uint64_t kStatus = 4;  // port 0x64

class I8042Test : public ::testing::Test {
 protected:
  uint8_t in(uint64_t off) {
    uint8_t v = 0;
    kbc_.read(off, std::span(&v, 1));
    return v;
  }
  void out(uint64_t off, uint8_t v) { kbc_.write(off, std::span<const uint8_t>(&v, 1)); }

  FakeVmEvents events_;
  I8042 kbc_{events_};
};

TEST_F(I8042Test, CommandFeTriggersReset) {
  out(kStatus, 0xfe);
  EXPECT_EQ(events_.resets, 1);
  EXPECT_EQ(events_.poweroffs, 0);
}

TEST_F(I8042Test, PulseWithResetBitSetDoesNotReset) {
  out(kStatus, 0xff);  // pulses no line (bit 0 is active low)
  EXPECT_EQ(events_.resets, 0);
}

TEST_F(I8042Test, DataWrittenToPort0x60WithFeDoesNotReset) {
  out(kData, 0xfe);  // a keyboard byte, not a controller command
  EXPECT_EQ(events_.resets, 0);
}

TEST_F(I8042Test, OutputPortWriteClearingResetBitResets) {
  out(kStatus, 0xd1);
  out(kData, 0x02);
  EXPECT_EQ(events_.resets, 1);
  out(kStatus, 0xd1);
  out(kData, 0x03);
  EXPECT_EQ(events_.resets, 1);
}

TEST_F(I8042Test, SelfTestAnswers0x55) {
  out(kStatus, 0xaa);
  EXPECT_EQ(in(kStatus)&0x01, 0x01);  // OBF
  EXPECT_EQ(in(kData), 0x55);
  EXPECT_EQ(in(kStatus)&0x01, 0x00);
}

TEST_F(I8042Test, InterfaceTestsAnswerZero) {
  out(kStatus, 0xab);
  EXPECT_EQ(in(kStatus)&0x01, 0x01);
  EXPECT_EQ(in(kData), 0x00);
  out(kStatus, 0xa9);
  EXPECT_EQ(in(kStatus)&0x01, 0x01);
  EXPECT_EQ(in(kData), 0x00);
}

TEST_F(I8042Test, CommandByteReadWriteRoundTrips) {
  out(kStatus, 0x60);
  out(kData, 0x65);
  out(kStatus, 0x20);
  EXPECT_EQ(in(kData), 0x65);
}

TEST_F(I8042Test, DisableAndEnablePortsShowInCommandByte) {
  out(kStatus, 0xad);
  out(kStatus, 0xa7);
  out(kStatus, 0x20);
  EXPECT_EQ(in(kData)&0x30, 0x30);
  out(kStatus, 0xae);
  out(kStatus, 0xa8);
  out(kStatus, 0x20);
  EXPECT_EQ(in(kData)&0x30, 0x00);
}

TEST_F(I8042Test, DataPortReadsZeroWhenEmpty) {
  EXPECT_EQ(in(kStatus)&0x01, 0x00);
  EXPECT_EQ(in(kData), 0x00);
}

TEST_F(I8042Test, StatusIsNotAllOnesSoLinuxSeesAController) {
  uint8_t s = in(kStatus);
  EXPECT_NE(s, 0xff);
  EXPECT_EQ(s & 0x02, 0x00);  // input buffer never full: guests may write at once
}

TEST_F(I8042Test, AuxLoopbackByteIsMarkedAsAuxData) {
  out(kStatus, 0xd3);
  out(kData, 0x5a);
  EXPECT_EQ(in(kStatus)&0x21, 0x21);
  EXPECT_EQ(in(kData), 0x5a);
}

TEST_F(I8042Test, StatusShowsWhetherLastWriteWasACommand) {
  out(kStatus, 0xa8);
  EXPECT_EQ(in(kStatus)&0x08, 0x08);
  out(kData, 0xf4);
  EXPECT_EQ(in(kStatus)&0x08, 0x00);
}

TEST_F(I8042Test, GuestFloodingCommandsCannotGrowOutputWithoutBound) {
  for (int i = 0; i < 100000; ++i) out(kStatus, 0xaa);
  int n = 0;
  while (in(kStatus)&0x01) {
    EXPECT_EQ(in(kData), 0x55);
    ++n;
  }
  EXPECT_LE(n, 64);
  EXPECT_GE(n, 1);
}

TEST_F(I8042Test, UnclaimedOffsetsReadAllOnesAndIgnoreWrites) {
  out(1, 0xfe);
  out(2, 0xfe);
  EXPECT_EQ(events_.resets, 0);
  EXPECT_EQ(in(1), 0xff);
}

}  // namespace
}  // namespace skiff

#include "devices/cmos_rtc.h"

#include <gtest/gtest.h>

namespace skiff {
namespace {

using std::chrono::microseconds;
using std::chrono::seconds;
using TimePoint = std::chrono::system_clock::time_point;

constexpr uint64_t kIndex = 0, kData = 1;
// 2024-02-29 13:45:07 UTC, a Thursday (computed independently with Python's
// calendar.timegm).
constexpr int64_t kThu20240229_134507 = 1709214307;
// 2024-03-03 00:30:00 UTC, a Sunday.
constexpr int64_t kSun20240303_003000 = 1709425800;

constexpr uint64_t kMiB = 1024 * 1024, kGiB = 1024 * kMiB;

class CmosRtcTest : public ::testing::Test {
 protected:
  explicit CmosRtcTest(CmosMemoryConfig mem = {.below_4g_bytes = 512 * kMiB})
      : rtc_(mem, [this] { return now_; }) {}

  uint8_t reg(uint8_t index) {
    rtc_.write(kIndex, std::span<const uint8_t>(&index, 1));
    uint8_t v = 0;
    rtc_.read(kData, std::span(&v, 1));
    return v;
  }
  void set(uint8_t index, uint8_t value) {
    rtc_.write(kIndex, std::span<const uint8_t>(&index, 1));
    rtc_.write(kData, std::span<const uint8_t>(&value, 1));
  }
  void at(int64_t epoch, microseconds sub = microseconds(0)) {
    now_ = TimePoint(seconds(epoch)) + sub;
  }

  TimePoint now_ = TimePoint(seconds(kThu20240229_134507));
  CmosRtc rtc_;
};

TEST_F(CmosRtcTest, ReadsBcdTimeMatchingTheInjectedClock) {
  EXPECT_EQ(reg(0x00), 0x07);
  EXPECT_EQ(reg(0x02), 0x45);
  EXPECT_EQ(reg(0x04), 0x13);
  EXPECT_EQ(reg(0x06), 0x05);  // Thursday, Sunday = 1
  EXPECT_EQ(reg(0x07), 0x29);
  EXPECT_EQ(reg(0x08), 0x02);
  EXPECT_EQ(reg(0x09), 0x24);
  EXPECT_EQ(reg(0x32), 0x20);
}

TEST_F(CmosRtcTest, TimeFollowsTheClockAtReadTime) {
  at(kThu20240229_134507 + 60 * 60 * 24 + 53);  // next day, 13:46:00
  EXPECT_EQ(reg(0x00), 0x00);
  EXPECT_EQ(reg(0x02), 0x46);
  EXPECT_EQ(reg(0x07), 0x01);
  EXPECT_EQ(reg(0x08), 0x03);
}

TEST_F(CmosRtcTest, DefaultsLikeAPcBios) {
  EXPECT_EQ(reg(0x0a), 0x26);
  EXPECT_EQ(reg(0x0b), 0x02);  // 24h, BCD
  EXPECT_EQ(reg(0x0c), 0x00);
  EXPECT_EQ(reg(0x0d), 0x80);  // VRT
}

TEST_F(CmosRtcTest, BinaryModeReadsPlainNumbers) {
  set(0x0b, 0x06);
  EXPECT_EQ(reg(0x00), 7);
  EXPECT_EQ(reg(0x02), 45);
  EXPECT_EQ(reg(0x04), 13);
  EXPECT_EQ(reg(0x07), 29);
  EXPECT_EQ(reg(0x09), 24);
  EXPECT_EQ(reg(0x32), 20);
}

TEST_F(CmosRtcTest, TwelveHourModeSetsPmBit) {
  set(0x0b, 0x00);             // 12h BCD
  EXPECT_EQ(reg(0x04), 0x81);  // 1 PM
  set(0x0b, 0x04);             // 12h binary
  EXPECT_EQ(reg(0x04), 0x81);
  at(kSun20240303_003000);
  EXPECT_EQ(reg(0x04), 12);  // 12 AM, binary
  set(0x0b, 0x00);
  EXPECT_EQ(reg(0x04), 0x12);
  EXPECT_EQ(reg(0x06), 0x01);  // Sunday
}

TEST_F(CmosRtcTest, WritingATimeRegisterMovesTheClockAndKeepsTicking) {
  set(0x02, 0x50);
  EXPECT_EQ(reg(0x02), 0x50);
  EXPECT_EQ(reg(0x00), 0x07);
  EXPECT_EQ(reg(0x04), 0x13);
  at(kThu20240229_134507 + 10);
  EXPECT_EQ(reg(0x00), 0x17);
  EXPECT_EQ(reg(0x02), 0x50);
}

TEST_F(CmosRtcTest, SetBitFreezesTheClockAndClearingItCommitsTheWrites) {
  set(0x0b, 0x82);
  // Intermediate states (day 31 of February) must not be normalised.
  set(0x07, 0x31);
  set(0x08, 0x12);
  set(0x09, 0x25);
  set(0x04, 0x23);
  set(0x02, 0x59);
  set(0x00, 0x58);
  at(kThu20240229_134507 + 100);
  EXPECT_EQ(reg(0x00), 0x58);  // frozen while SET
  EXPECT_EQ(reg(0x0a) & 0x80, 0);
  set(0x0b, 0x02);
  EXPECT_EQ(reg(0x09), 0x25);
  EXPECT_EQ(reg(0x08), 0x12);
  EXPECT_EQ(reg(0x07), 0x31);
  at(kThu20240229_134507 + 103);
  EXPECT_EQ(reg(0x00), 0x01);
  EXPECT_EQ(reg(0x02), 0x00);
  EXPECT_EQ(reg(0x04), 0x00);
  EXPECT_EQ(reg(0x07), 0x01);
  EXPECT_EQ(reg(0x08), 0x01);
  EXPECT_EQ(reg(0x09), 0x26);
  EXPECT_EQ(reg(0x32), 0x20);
}

TEST_F(CmosRtcTest, WritesInBinaryTwelveHourModeAreDecodedInThatMode) {
  set(0x0b, 0x04);       // binary, 12h
  set(0x04, 0x80 | 11);  // 11 PM
  set(0x0b, 0x02);       // back to BCD 24h
  EXPECT_EQ(reg(0x04), 0x23);
}

TEST_F(CmosRtcTest, UipIsSetOnlyJustBeforeTheSecondTicks) {
  at(kThu20240229_134507, microseconds(0));
  EXPECT_EQ(reg(0x0a) & 0x80, 0);
  at(kThu20240229_134507, microseconds(999'000));
  EXPECT_EQ(reg(0x0a) & 0x80, 0);
  at(kThu20240229_134507, microseconds(999'900));
  EXPECT_EQ(reg(0x0a) & 0x80, 0x80);
  EXPECT_EQ(reg(0x0a) & 0x7f, 0x26);
}

TEST_F(CmosRtcTest, RegisterAUipIsReadOnly) {
  set(0x0a, 0xa6);
  EXPECT_EQ(reg(0x0a), 0x26);
}

TEST_F(CmosRtcTest, NvramPersistsAcrossResetButControlRegistersDoNot) {
  set(0x40, 0xab);
  set(0x7f, 0xcd);
  set(0x02, 0x10);  // guest-set time survives too (battery-backed clock)
  set(0x0b, 0x06);
  rtc_.reset();
  EXPECT_EQ(reg(0x40), 0xab);
  EXPECT_EQ(reg(0x7f), 0xcd);
  EXPECT_EQ(reg(0x0b), 0x02);
  EXPECT_EQ(reg(0x02), 0x10);
}

TEST_F(CmosRtcTest, IndexBit7IsTheNmiMaskAndIgnored) {
  set(0x40, 0x5a);
  EXPECT_EQ(reg(0x80 | 0x40), 0x5a);
}

TEST_F(CmosRtcTest, IndexPortReadsAllOnes) {
  uint8_t v = 0;
  rtc_.read(kIndex, std::span(&v, 1));
  EXPECT_EQ(v, 0xff);
}

TEST_F(CmosRtcTest, RegistersCAndDAreReadOnly) {
  set(0x0c, 0xff);
  set(0x0d, 0x00);
  EXPECT_EQ(reg(0x0c), 0x00);
  EXPECT_EQ(reg(0x0d), 0x80);
}

TEST_F(CmosRtcTest, WordWriteSetsIndexThenData) {
  uint8_t w[2] = {0x41, 0x77};
  rtc_.write(kIndex, w);
  EXPECT_EQ(reg(0x41), 0x77);
}

TEST_F(CmosRtcTest, HostileTimeValuesDoNotCrashAndKeepTheClockSane) {
  for (uint8_t r : {0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32}) set(r, 0xff);
  set(0x0b, 0x86);
  for (uint8_t r : {0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32}) set(r, 0xff);
  set(0x0b, 0x02);
  // Whatever time that normalises to, registers must stay valid BCD.
  for (uint8_t r : {0x00, 0x02, 0x04, 0x07, 0x08, 0x09}) {
    uint8_t v = reg(r);
    EXPECT_LE(v & 0x0f, 9) << "register " << int(r);
    EXPECT_LE(v >> 4, 9) << "register " << int(r);
  }
}

class CmosMemorySizeTest : public CmosRtcTest {
 protected:
  CmosMemorySizeTest() : CmosRtcTest({.below_4g_bytes = 3 * kGiB, .above_4g_bytes = 5 * kGiB}) {}
};

TEST_F(CmosMemorySizeTest, MemorySizeRegistersFollowQemuLayout) {
  EXPECT_EQ(reg(0x15), 0x80);  // 640 KiB
  EXPECT_EQ(reg(0x16), 0x02);
  EXPECT_EQ(reg(0x17), 0xff);  // saturated at 65535 KiB
  EXPECT_EQ(reg(0x18), 0xff);
  EXPECT_EQ(reg(0x30), 0xff);
  EXPECT_EQ(reg(0x31), 0xff);
  // (3 GiB - 16 MiB) / 64 KiB = 48896 = 0xbf00
  EXPECT_EQ(reg(0x34), 0x00);
  EXPECT_EQ(reg(0x35), 0xbf);
  // 5 GiB / 64 KiB = 81920 = 0x014000
  EXPECT_EQ(reg(0x5b), 0x00);
  EXPECT_EQ(reg(0x5c), 0x40);
  EXPECT_EQ(reg(0x5d), 0x01);
}

TEST(CmosMemorySize, SmallGuestHasOnlyExtendedMemory) {
  CmosRtc rtc({.below_4g_bytes = 8 * kMiB}, [] { return TimePoint(seconds(0)); });
  auto reg = [&](uint8_t i) {
    rtc.write(kIndex, std::span<const uint8_t>(&i, 1));
    uint8_t v = 0;
    rtc.read(kData, std::span(&v, 1));
    return v;
  };
  EXPECT_EQ(reg(0x17), 0x00);  // 7 MiB = 7168 KiB = 0x1c00
  EXPECT_EQ(reg(0x18), 0x1c);
  EXPECT_EQ(reg(0x34), 0x00);
  EXPECT_EQ(reg(0x35), 0x00);
  EXPECT_EQ(reg(0x5b), 0x00);
  // Epoch 0 is 1970-01-01, a Thursday.
  EXPECT_EQ(reg(0x09), 0x70);
  EXPECT_EQ(reg(0x32), 0x19);
  EXPECT_EQ(reg(0x06), 0x05);
}

}  // namespace
}  // namespace skiff

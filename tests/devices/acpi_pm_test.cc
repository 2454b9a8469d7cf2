#include "devices/acpi_pm.h"

#include <gtest/gtest.h>

#include "devices/fakes.h"

namespace skiff {
namespace {

using testing::FakeVmEvents;

constexpr uint64_t kControl = 0, kStatus = 1, kReset = 2;
constexpr uint8_t kSlpEn = 0x20;

class AcpiPmTest : public ::testing::Test {
 protected:
  void out(uint64_t off, uint8_t v) { pm_.write(off, std::span<const uint8_t>(&v, 1)); }
  uint8_t in(uint64_t off) {
    uint8_t v = 0xee;
    pm_.read(off, std::span(&v, 1));
    return v;
  }
  FakeVmEvents events_;
  AcpiPm pm_{events_, AcpiPmConfig{.s5_sleep_type = 5, .reset_value = 1}};
};

TEST_F(AcpiPmTest, S5WithSleepEnablePowersOff) {
  out(kControl, static_cast<uint8_t>(kSlpEn | (5 << 2)));
  EXPECT_EQ(events_.poweroffs, 1);
  EXPECT_EQ(events_.resets, 0);
}

TEST_F(AcpiPmTest, S5WithoutSleepEnableDoesNothing) {
  out(kControl, 5 << 2);
  EXPECT_EQ(events_.poweroffs, 0);
}

TEST_F(AcpiPmTest, OtherSleepTypesAreIgnored) {
  for (uint8_t type : {0, 1, 3, 4, 6, 7}) out(kControl, static_cast<uint8_t>(kSlpEn | (type << 2)));
  EXPECT_EQ(events_.poweroffs, 0);
  EXPECT_EQ(events_.resets, 0);
}

TEST_F(AcpiPmTest, S5TypeIsTakenFromConfig) {
  FakeVmEvents events;
  AcpiPm pm(events, AcpiPmConfig{.s5_sleep_type = 7, .reset_value = 1});
  uint8_t v = static_cast<uint8_t>(kSlpEn | (5 << 2));
  pm.write(kControl, std::span<const uint8_t>(&v, 1));
  EXPECT_EQ(events.poweroffs, 0);
  v = static_cast<uint8_t>(kSlpEn | (7 << 2));
  pm.write(kControl, std::span<const uint8_t>(&v, 1));
  EXPECT_EQ(events.poweroffs, 1);
}

TEST_F(AcpiPmTest, ResetRegisterResetsOnlyWithResetValue) {
  out(kReset, 0x02);
  out(kReset, 0x00);
  EXPECT_EQ(events_.resets, 0);
  out(kReset, 0x01);
  EXPECT_EQ(events_.resets, 1);
  EXPECT_EQ(events_.poweroffs, 0);
}

TEST_F(AcpiPmTest, SleepStatusReadsZeroAndAcceptsWriteOneToClear) {
  EXPECT_EQ(in(kStatus), 0);
  out(kStatus, 0x80);
  EXPECT_EQ(in(kStatus), 0);
  EXPECT_EQ(in(kControl), 0);
  EXPECT_EQ(in(kReset), 0);
}

TEST_F(AcpiPmTest, S5WrittenToTheWrongRegisterDoesNothing) {
  out(kStatus, static_cast<uint8_t>(kSlpEn | (5 << 2)));
  out(3, static_cast<uint8_t>(kSlpEn | (5 << 2)));
  EXPECT_EQ(events_.poweroffs, 0);
}

}  // namespace
}  // namespace skiff

#include "devices/pci/msix.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace skiff::pci {
namespace {

struct RecordingSender : MsiSender {
  struct Msg {
    uint64_t address;
    uint32_t data;
    bool operator==(const Msg&) const = default;
  };
  void send_msi(uint64_t address, uint32_t data) override { sent.push_back({address, data}); }
  std::vector<Msg> sent;
};

struct MsixTest : ::testing::Test {
  MsixTest() : config(PciIds{}), msix(3, sender) {
    EXPECT_TRUE(msix.add_capability(config, 2, 0x1000, 0x1800));
    cap = *config.find_capability(kCapIdMsix);
  }
  void write_control(uint16_t v) {
    config.write(static_cast<uint16_t>(cap + 2),
                 std::span(reinterpret_cast<const uint8_t*>(&v), 2));
    msix.config_written(config);
  }
  void table_write32(uint64_t off, uint32_t v) {
    msix.table_write(off, std::span(reinterpret_cast<const uint8_t*>(&v), 4));
  }
  uint32_t table_read32(uint64_t off) {
    uint32_t v;
    msix.table_read(off, std::span(reinterpret_cast<uint8_t*>(&v), 4));
    return v;
  }
  uint64_t pba() {
    uint64_t v;
    msix.pba_read(0, std::span(reinterpret_cast<uint8_t*>(&v), 8));
    return v;
  }
  void program(uint16_t vec, uint64_t addr, uint32_t data, bool masked) {
    table_write32(vec * 16 + 0, static_cast<uint32_t>(addr));
    table_write32(vec * 16 + 4, static_cast<uint32_t>(addr >> 32));
    table_write32(vec * 16 + 8, data);
    table_write32(vec * 16 + 12, masked ? 1 : 0);
  }

  RecordingSender sender;
  PciConfigSpace config;
  Msix msix;
  uint16_t cap = 0;
};

TEST_F(MsixTest, CapabilityAdvertisesTableSizeAndLocation) {
  EXPECT_EQ(config.u16(cap + 2), 2);             // N - 1
  EXPECT_EQ(config.u32(cap + 4), 0x1000u | 2u);  // table offset | BIR
  EXPECT_EQ(config.u32(cap + 8), 0x1800u | 2u);  // PBA offset | BIR
  // Table size is read-only; only Enable and Function Mask can be written.
  write_control(0xffff);
  EXPECT_EQ(config.u16(cap + 2), kMsixControlEnable | kMsixControlFunctionMask | 2);
}

TEST_F(MsixTest, DisabledMsixSendsNothingAndReportsFallback) {
  program(0, 0xfee00000, 0x41, false);
  EXPECT_FALSE(msix.notify(0));
  EXPECT_TRUE(sender.sent.empty());
  EXPECT_EQ(pba(), 0u);
}

TEST_F(MsixTest, VectorsStartMaskedAndPendUntilUnmasked) {
  for (uint16_t v = 0; v < 3; ++v) EXPECT_EQ(table_read32(v * 16 + 12), 1u);
  write_control(kMsixControlEnable);
  table_write32(16 + 0, 0xfee01000);
  table_write32(16 + 8, 0x4031);
  EXPECT_TRUE(msix.notify(1));
  EXPECT_TRUE(sender.sent.empty());
  EXPECT_EQ(pba(), 0b010u);
  EXPECT_TRUE(msix.pending(1));
  table_write32(16 + 12, 0);  // unmask: the pending message goes out
  ASSERT_EQ(sender.sent.size(), 1u);
  EXPECT_EQ(sender.sent[0], (RecordingSender::Msg{0xfee01000, 0x4031}));
  EXPECT_EQ(pba(), 0u);
  EXPECT_TRUE(msix.notify(1));
  EXPECT_EQ(sender.sent.size(), 2u);
}

TEST_F(MsixTest, FunctionMaskHoldsEveryVector) {
  program(0, 0xfee00000, 0x30, false);
  program(2, 0xfee00000, 0x32, false);
  write_control(kMsixControlEnable | kMsixControlFunctionMask);
  msix.notify(0);
  msix.notify(2);
  EXPECT_TRUE(sender.sent.empty());
  EXPECT_EQ(pba(), 0b101u);
  write_control(kMsixControlEnable);
  ASSERT_EQ(sender.sent.size(), 2u);
  EXPECT_EQ(sender.sent[0].data, 0x30u);
  EXPECT_EQ(sender.sent[1].data, 0x32u);
}

TEST_F(MsixTest, QwordAccessesAndReservedControlBits) {
  uint64_t addr = 0x00000001fee02000ull;
  msix.table_write(0, std::span(reinterpret_cast<const uint8_t*>(&addr), 8));
  uint64_t back = 0;
  msix.table_read(0, std::span(reinterpret_cast<uint8_t*>(&back), 8));
  EXPECT_EQ(back, addr);
  table_write32(12, 0xfffffffe);  // reserved bits set, mask clear
  EXPECT_EQ(table_read32(12), 0u);
}

TEST_F(MsixTest, HostileTableAccessesAreIgnored) {
  program(0, 0xfee00000, 0x55, true);
  // Unaligned, byte-sized, word-sized, past the end.
  uint8_t b = 0;
  msix.table_write(12, std::span<const uint8_t>(&b, 1));
  uint16_t w = 0;
  msix.table_write(12, std::span(reinterpret_cast<const uint8_t*>(&w), 2));
  table_write32(13, 0);
  table_write32(3 * 16, 0x12345678);
  table_write32(0xfffffffffffffff0ull, 0);
  EXPECT_EQ(table_read32(12), 1u);  // still masked
  EXPECT_EQ(table_read32(2), 0xffffffffu);
  EXPECT_EQ(table_read32(3 * 16), 0xffffffffu);
  uint64_t q = 0;
  msix.pba_read(8, std::span(reinterpret_cast<uint8_t*>(&q), 8));
  EXPECT_EQ(q, ~0ull);
  EXPECT_FALSE(msix.notify(3));  // no such vector
  EXPECT_FALSE(msix.notify(0xffff));
}

TEST_F(MsixTest, ResetMasksAndClearsEverything) {
  program(1, 0xfee00000, 0x99, true);
  write_control(kMsixControlEnable);
  msix.notify(1);
  msix.reset();
  EXPECT_FALSE(msix.enabled());
  EXPECT_EQ(pba(), 0u);
  EXPECT_EQ(table_read32(16 + 8), 0u);
  EXPECT_TRUE(msix.masked(1));
}

TEST(Msix, VectorCountIsChecked) {
  struct Null : MsiSender {
    void send_msi(uint64_t, uint32_t) override {}
  } s;
  PciConfigSpace cs(PciIds{});
  Msix zero(0, s);
  EXPECT_FALSE(zero.add_capability(cs, 0, 0, 0x800));
  Msix ok(4, s);
  EXPECT_FALSE(ok.add_capability(cs, 6, 0, 0x800));
  EXPECT_FALSE(ok.add_capability(cs, 0, 4, 0x800));
}

}  // namespace
}  // namespace skiff::pci

#include "devices/pci/pci_root.h"

#include <gtest/gtest.h>

#include "devices/pci/pci_test_util.h"

namespace skiff::pci {
namespace {

using testing::FakeDevice;
using testing::Machine;

struct PciRootTest : ::testing::Test {
  void SetUp() override {
    dev = std::make_shared<FakeDevice>();
    auto n = m.root.add_device(dev);
    ASSERT_TRUE(n);
    slot = *n;
  }
  Machine m;
  std::shared_ptr<FakeDevice> dev;
  uint8_t slot = 0;
};

TEST_F(PciRootTest, HostBridgeIsDeviceZeroAndFirstDeviceGetsSlotOne) {
  EXPECT_EQ(slot, 1);
  EXPECT_EQ(m.io_read(0, kRegVendorId), 0x00081b36u);
  EXPECT_EQ(m.io_read(0, 0x08) >> 8, 0x060000u);  // class: host bridge
}

TEST_F(PciRootTest, PortsAndEcamReadTheSameHeader) {
  for (uint16_t reg = 0; reg < 0x40; reg += 4) {
    EXPECT_EQ(m.io_read(slot, reg), m.ecam_read(slot, reg)) << "register " << reg;
    for (uint16_t b = 0; b < 4; ++b)
      EXPECT_EQ(m.io_read(slot, reg + b, 1), m.ecam_read(slot, reg + b, 1));
  }
  EXPECT_EQ(m.io_read(slot, kRegVendorId, 2), 0x1234u);
  EXPECT_EQ(m.io_read(slot, kRegDeviceId, 2), 0x5678u);
  EXPECT_EQ(m.io_read(slot, kRegRevision), 0x01800003u);
  EXPECT_EQ(m.ecam_read(slot, kRegSubsystemId, 2), 0x42u);
  EXPECT_EQ(m.ecam_read(slot, kRegInterruptPin, 1), 1u);
}

TEST_F(PciRootTest, AbsentFunctionsReadAllOnes) {
  EXPECT_EQ(m.io_read(7, kRegVendorId), 0xffffffffu);              // empty slot
  EXPECT_EQ(m.io_read(slot, kRegVendorId, 4, 1), 0xffffffffu);     // function 1
  EXPECT_EQ(m.io_read(slot, kRegVendorId, 4, 0, 1), 0xffffffffu);  // bus 1
  EXPECT_EQ(m.ecam_read(31, kRegVendorId), 0xffffffffu);
  EXPECT_EQ(m.ecam_read(slot, kRegVendorId, 2, 3), 0xffffu);
  m.ecam_write(7, kRegCommand, 0xffff);  // ignored, must not crash
  EXPECT_EQ(m.ecam_read(7, kRegCommand), 0xffffffffu);
}

TEST_F(PciRootTest, WriteThroughPortsIsSeenThroughEcam) {
  m.io_write(slot, kRegInterruptLine, 0x0b, 1);
  EXPECT_EQ(m.ecam_read(slot, kRegInterruptLine, 1), 0x0bu);
  m.ecam_write(slot, kRegInterruptLine, 0x05, 1);
  EXPECT_EQ(m.io_read(slot, kRegInterruptLine, 1), 0x05u);
}

TEST_F(PciRootTest, ReadOnlyFieldsIgnoreWrites) {
  m.ecam_write(slot, kRegVendorId, 0xdeadbeef);
  m.ecam_write(slot, 0x08, 0xffffffff);  // revision + class
  m.ecam_write(slot, kRegCapabilitiesPtr, 0xff, 1);
  m.ecam_write(slot, kRegInterruptPin, 0x04, 1);
  EXPECT_EQ(m.ecam_read(slot, kRegVendorId), 0x56781234u);
  EXPECT_EQ(m.ecam_read(slot, 0x08), 0x01800003u);
  EXPECT_EQ(m.ecam_read(slot, kRegCapabilitiesPtr, 1), 0u);
  EXPECT_EQ(m.ecam_read(slot, kRegInterruptPin, 1), 1u);
  // Only memory, bus master and INTx disable are writable in Command.
  m.ecam_write(slot, kRegCommand, 0xffff, 2);
  EXPECT_EQ(m.ecam_read(slot, kRegCommand, 2),
            uint64_t{kCommandMemorySpace | kCommandBusMaster | kCommandIntxDisable});
}

TEST_F(PciRootTest, BarSizingReadsBackSizeMaskAndTypeBits) {
  uint32_t bar0 = m.io_read(slot, kRegBar0);
  m.io_write(slot, kRegBar0, 0xffffffff);
  EXPECT_EQ(m.io_read(slot, kRegBar0), 0xffffc000u);  // 16 KiB, 32-bit, non-prefetchable
  m.io_write(slot, kRegBar0, bar0);
  EXPECT_EQ(m.io_read(slot, kRegBar0), bar0);

  m.ecam_write(slot, kRegBar0 + 8, 0xffffffff);
  m.ecam_write(slot, kRegBar0 + 12, 0xffffffff);
  EXPECT_EQ(m.ecam_read(slot, kRegBar0 + 8), 0xfff0000cu);  // 1 MiB, 64-bit, prefetchable
  EXPECT_EQ(m.ecam_read(slot, kRegBar0 + 12), 0xffffffffu);
  // Unimplemented BARs read 0 whatever is written.
  m.ecam_write(slot, kRegBar0 + 4, 0xffffffff);
  m.ecam_write(slot, kRegBar0 + 20, 0xffffffff);
  EXPECT_EQ(m.ecam_read(slot, kRegBar0 + 4), 0u);
  EXPECT_EQ(m.ecam_read(slot, kRegBar0 + 20), 0u);
}

TEST_F(PciRootTest, AddDevicePlacesBarsNaturallyAlignedInTheirWindows) {
  uint64_t bar0 = dev->config().bar_address(0);
  uint64_t bar2 = dev->config().bar_address(2);
  EXPECT_GE(bar0, x86::kPciMmio32Start);
  EXPECT_LT(bar0, x86::kPciMmio32End);
  EXPECT_EQ(bar0 % (16 * 1024), 0u);
  EXPECT_GE(bar2, 0x10000000000ull);  // 64-bit prefetchable: above 4 GiB
  EXPECT_EQ(bar2 % (1 << 20), 0u);
  auto other = std::make_shared<FakeDevice>();
  ASSERT_TRUE(m.root.add_device(other));
  EXPECT_GE(other->config().bar_address(0), bar0 + 16 * 1024);  // no overlap
}

TEST_F(PciRootTest, MemoryEnableMapsBarsOnTheMmioBus) {
  uint64_t bar0 = dev->config().bar_address(0);
  uint64_t bar2 = dev->config().bar_address(2);
  EXPECT_FALSE(m.mmio_claimed(bar0));
  EXPECT_FALSE(m.root.bar_mapping(slot, 0));
  m.ecam_write(slot, kRegCommand, kCommandMemorySpace, 2);
  EXPECT_EQ(m.mmio_read(bar0 + 0x10), 0x10u);
  EXPECT_EQ(m.mmio_read(bar2 + 0x2004), (2u << 24) | 0x2004u);
  EXPECT_EQ(m.root.bar_mapping(slot, 0), bar0);
  ASSERT_EQ(dev->mappings.size(), 2u);
  EXPECT_EQ(dev->mappings[0].address, bar0);
  // Turning decode off unmaps them again and tells the device.
  m.ecam_write(slot, kRegCommand, 0, 2);
  EXPECT_FALSE(m.mmio_claimed(bar0));
  EXPECT_FALSE(m.mmio_claimed(bar2));
  ASSERT_EQ(dev->mappings.size(), 4u);
  EXPECT_FALSE(dev->mappings[3].address);
}

TEST_F(PciRootTest, MovingABarReregistersItAtTheNewAddress) {
  m.ecam_write(slot, kRegCommand, kCommandMemorySpace, 2);
  uint64_t old = dev->config().bar_address(0);
  uint64_t moved = 0xd0000000;
  m.ecam_write(slot, kRegBar0, moved);
  EXPECT_FALSE(m.mmio_claimed(old));
  EXPECT_EQ(m.mmio_read(moved + 8), 8u);
  EXPECT_EQ(dev->mappings.back().address, moved);
  uint32_t v = 7;
  m.mmio.write(moved + 0x100, std::span(reinterpret_cast<const uint8_t*>(&v), 4));
  ASSERT_EQ(dev->writes.size(), 1u);
  EXPECT_EQ(dev->writes[0].bar, 0u);
  EXPECT_EQ(dev->writes[0].offset, 0x100u);
  // A 64-bit BAR moved by writing both halves.
  m.ecam_write(slot, kRegBar0 + 8, 0x00200000);
  m.ecam_write(slot, kRegBar0 + 12, 0x180);
  EXPECT_EQ(m.root.bar_mapping(slot, 2), 0x18000200000ull);
  EXPECT_EQ(m.mmio_read(0x18000200000ull), 2u << 24);
}

TEST_F(PciRootTest, BarsProgrammedOutsideTheWindowsDoNotDecode) {
  m.ecam_write(slot, kRegCommand, kCommandMemorySpace, 2);
  for (uint32_t addr : {0x00001000u, 0x00100000u, 0xfee00000u, 0xfec00000u, 0xffffc000u,
                        static_cast<uint32_t>(x86::kPciEcamBase)}) {
    m.ecam_write(slot, kRegBar0, addr);
    EXPECT_FALSE(m.root.bar_mapping(slot, 0)) << std::hex << addr;
  }
  // The ECAM window itself is untouched by those attempts.
  EXPECT_EQ(m.ecam_read(0, kRegVendorId, 2), 0x1b36u);
  // 64-bit BAR at an absurd address (and one that would wrap).
  m.ecam_write(slot, kRegBar0 + 12, 0xffffffff);
  m.ecam_write(slot, kRegBar0 + 8, 0xfff00000);
  EXPECT_FALSE(m.root.bar_mapping(slot, 2));
  // Back inside a window: decodes again.
  m.ecam_write(slot, kRegBar0, 0xc8000000);
  EXPECT_EQ(m.root.bar_mapping(slot, 0), 0xc8000000u);
}

TEST_F(PciRootTest, BarOverlappingAnotherDeviceStaysDark) {
  auto other = std::make_shared<FakeDevice>();
  uint8_t s2 = *m.root.add_device(other);
  m.ecam_write(slot, kRegCommand, kCommandMemorySpace, 2);
  m.ecam_write(s2, kRegCommand, kCommandMemorySpace, 2);
  uint64_t first = dev->config().bar_address(0);
  m.ecam_write(s2, kRegBar0, first);
  EXPECT_FALSE(m.root.bar_mapping(s2, 0));
  EXPECT_EQ(m.root.bar_mapping(slot, 0), first);
  m.mmio.write(first, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&first), 4));
  EXPECT_EQ(dev->writes.size(), 1u);
  EXPECT_TRUE(other->writes.empty());
}

TEST_F(PciRootTest, UnalignedAndOutOfRangeConfigAccessesAreRefused) {
  m.ecam_write(slot, kRegInterruptLine, 0x0a, 1);
  EXPECT_EQ(m.ecam_read(slot, 0x02, 4), 0xffffffffu);  // dword at +2
  EXPECT_EQ(m.ecam_read(slot, 0x01, 2), 0xffffu);
  EXPECT_EQ(m.ecam_read(slot, 0xffe, 4), 0xffffffffu);  // would cross 4 KiB
  m.ecam_write(slot, 0x3b, 0xffffffff, 4);              // unaligned over Interrupt Line
  EXPECT_EQ(m.ecam_read(slot, kRegInterruptLine, 1), 0x0au);
  // Extended config space exists (4 KiB) and is empty.
  EXPECT_EQ(m.ecam_read(slot, 0x100), 0u);
  EXPECT_EQ(m.ecam_read(slot, 0xffc), 0u);
  // ECAM beyond bus 0 is not claimed: reads all-ones.
  uint32_t v = 0;
  EXPECT_FALSE(m.mmio.read(x86::kPciEcamBase + x86::kPciEcamSize,
                           std::span(reinterpret_cast<uint8_t*>(&v), 4)));
  EXPECT_EQ(v, 0xffffffffu);
  // 8-byte ECAM reads are split into two dwords.
  EXPECT_EQ(m.ecam_read(slot, 0, 8), (m.ecam_read(slot, 4) << 32) | m.ecam_read(slot, 0));
}

TEST_F(PciRootTest, ConfigAddressNeedsEnableBitAndDwordWrites) {
  uint32_t a = testing::cf8_address(0, slot, 0, 0) & ~0x80000000u;
  m.pio.write(x86::kPortPciConfigAddr, std::span(reinterpret_cast<const uint8_t*>(&a), 4));
  uint32_t v = 0;
  m.pio.read(x86::kPortPciConfigData, std::span(reinterpret_cast<uint8_t*>(&v), 4));
  EXPECT_EQ(v, 0xffffffffu);
  // CONFIG_ADDRESS reads back what was latched, reserved bits cleared.
  uint32_t w = 0xffffffff;
  m.pio.write(x86::kPortPciConfigAddr, std::span(reinterpret_cast<const uint8_t*>(&w), 4));
  m.pio.read(x86::kPortPciConfigAddr, std::span(reinterpret_cast<uint8_t*>(&v), 4));
  EXPECT_EQ(v, 0x80fffffcu);
  // A byte write to 0xcf8 does not change the latch.
  a = testing::cf8_address(0, slot, 0, 0);
  m.pio.write(x86::kPortPciConfigAddr, std::span(reinterpret_cast<const uint8_t*>(&a), 4));
  uint8_t b = 0;
  m.pio.write(x86::kPortPciConfigAddr, std::span(&b, 1));
  m.pio.read(x86::kPortPciConfigData, std::span(reinterpret_cast<uint8_t*>(&v), 4));
  EXPECT_EQ(v, 0x56781234u);
  // 16-bit read at 0xcfe gives the upper half of the dword.
  uint16_t h = 0;
  m.pio.read(x86::kPortPciConfigData + 2, std::span(reinterpret_cast<uint8_t*>(&h), 2));
  EXPECT_EQ(h, 0x5678u);
}

TEST_F(PciRootTest, ResetUnmapsBarsAndRestoresPlacement) {
  uint64_t placed = dev->config().bar_address(0);
  m.ecam_write(slot, kRegCommand, kCommandMemorySpace, 2);
  m.ecam_write(slot, kRegBar0, 0xd0000000);
  m.ecam_write(slot, kRegInterruptLine, 0x09, 1);
  m.root.reset();
  EXPECT_EQ(dev->resets, 1);
  EXPECT_FALSE(m.mmio_claimed(0xd0000000));
  EXPECT_EQ(m.ecam_read(slot, kRegCommand, 2), 0u);
  EXPECT_EQ(dev->config().bar_address(0), placed);
  EXPECT_EQ(m.ecam_read(slot, kRegInterruptLine, 1), 0u);
  // And it maps again after reset.
  m.ecam_write(slot, kRegCommand, kCommandMemorySpace, 2);
  EXPECT_EQ(m.root.bar_mapping(slot, 0), placed);
}

TEST(PciRoot, BusFullIsAnError) {
  Machine m;
  for (int i = 1; i < 32; ++i) ASSERT_TRUE(m.root.add_device(std::make_shared<FakeDevice>())) << i;
  EXPECT_FALSE(m.root.add_device(std::make_shared<FakeDevice>()));
}

TEST(PciRoot, BarWindowExhaustionIsAnError) {
  Bus mmio("mmio");
  PciRoot root(mmio, {0xc0000000, 0xc0100000}, {0, 0});  // 1 MiB, no 64-bit window
  auto d = std::make_shared<FakeDevice>();               // needs 16 KiB + 1 MiB
  EXPECT_FALSE(root.add_device(d));
}

}  // namespace
}  // namespace skiff::pci

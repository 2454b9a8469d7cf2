// PCI INTx on the machine side, without KVM: each function's Interrupt Line
// names the GSI the DSDT's _PRT gives its slot, and shared GSIs behave as
// wired-OR lines (asserted while any function asserts).
#include <gtest/gtest.h>

#include <optional>
#include <shared_mutex>
#include <utility>
#include <vector>

#include "arch/x86/layout.h"
#include "arch/x86/pci_irq.h"
#include "vmm/pci_devices.h"
#include "vmm/pci_intx.h"

namespace skiff {
namespace {

TEST(PciIntxRouter, SharedGsiStaysAssertedUntilTheLastLineDrops) {
  std::vector<std::pair<uint32_t, bool>> calls;
  PciIntxRouter r([&](uint32_t gsi, bool level) { calls.emplace_back(gsi, level); });
  // Slots 1 and 5 share GSI 17; slot 2 is on 18.
  IrqLine* a = r.line(1, 0);
  IrqLine* b = r.line(5, 0);
  IrqLine* c = r.line(2, 0);
  a->set_level(true);
  a->set_level(true);  // a repeated raise counts once
  b->set_level(true);
  EXPECT_EQ(r.asserted(17), 2u);
  a->set_level(false);
  EXPECT_EQ(r.asserted(17), 1u);
  c->set_level(true);
  b->set_level(false);
  b->set_level(false);  // a repeated drop does not steal a's or c's count
  c->set_level(false);
  std::vector<std::pair<uint32_t, bool>> want{{17, true}, {18, true}, {17, false}, {18, false}};
  EXPECT_EQ(calls, want);
  EXPECT_EQ(r.asserted(17), 0u);
}

struct PciIntxMachine : ::testing::Test {
  std::vector<uint8_t> ram = std::vector<uint8_t>(1 << 20);
  GuestMemory mem = *GuestMemory::create({{0, ram.size(), ram.data()}});
  Bus pio{"pio"};
  Bus mmio{"mmio"};
  std::shared_mutex vm_mu;
  std::optional<kvm::Vm> vm;  // none: nothing to deliver to
  VmPlumbing plumbing{vm_mu, vm};

  uint32_t config_read(uint8_t slot, uint8_t offset) {
    uint32_t addr = 0x80000000u | uint32_t{slot} << 11 | offset;
    std::vector<uint8_t> a(4);
    std::memcpy(a.data(), &addr, 4);
    pio.write(x86::kPortPciConfigAddr, a);
    std::vector<uint8_t> d(4);
    pio.read(x86::kPortPciConfigData, d);
    uint32_t v;
    std::memcpy(&v, d.data(), 4);
    return v;
  }
};

TEST_F(PciIntxMachine, InterruptLineOfEverySlotIsItsPrtGsi) {
  VmConfig c;
  c.rng = RngConfig{};
  c.console = ConsoleConfig{.backend = "off"};
  c.balloon = BalloonConfig{.size = 0};
  auto p = PciDevices::create(c, mem, pio, mmio, plumbing, [](uint32_t, bool) {});
  ASSERT_TRUE(p) << p.error().what();
  unsigned functions = 0;
  for (uint8_t slot = 1; slot < x86::kPciSlots; ++slot) {
    if ((config_read(slot, 0) & 0xffff) == 0xffff) continue;  // empty slot
    ++functions;
    uint32_t reg = config_read(slot, 0x3c);  // Interrupt Line, Interrupt Pin
    uint8_t pin = static_cast<uint8_t>(reg >> 8);
    ASSERT_EQ(pin, 1u) << "INTA#";
    EXPECT_EQ(reg & 0xff, x86::pci_intx_gsi(slot, 0)) << "slot " << int{slot};
  }
  EXPECT_EQ(functions, 3u);
}

}  // namespace
}  // namespace skiff

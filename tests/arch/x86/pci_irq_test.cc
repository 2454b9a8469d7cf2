// The DSDT's _PRT (ACPI 6.5 §6.2.13): decoded from the AML bytes skiff
// builds, every slot's four pins map to x86::pci_intx_gsi(). (iasl reads
// it back in acpi_iasl_test.cc.)
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "arch/x86/acpi.h"
#include "arch/x86/pci_irq.h"

namespace skiff::x86 {
namespace {

struct PrtEntry {
  uint64_t address, pin, source, gsi;
};

// A minimal reader for what _PRT holds: PackageOp, PkgLength, integers.
struct AmlReader {
  const aml::Bytes& b;
  size_t at;
  uint8_t next() {
    if (at >= b.size()) throw std::runtime_error("AML ends early");
    return b[at++];
  }
  uint64_t pkg_length() {
    uint8_t lead = next();
    unsigned follow = lead >> 6;
    if (follow == 0) return lead & 0x3f;
    uint64_t v = lead & 0x0f;
    for (unsigned i = 0; i < follow; ++i) v |= uint64_t{next()} << (4 + 8 * i);
    return v;
  }
  uint64_t integer() {
    uint8_t op = next();
    unsigned bytes = 0;
    switch (op) {
      case 0x00:
        return 0;  // ZeroOp
      case 0x01:
        return 1;  // OneOp
      case 0x0a:
        bytes = 1;
        break;
      case 0x0b:
        bytes = 2;
        break;
      case 0x0c:
        bytes = 4;
        break;
      case 0x0e:
        bytes = 8;
        break;
      default:
        throw std::runtime_error("not an integer opcode");
    }
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; ++i) v |= uint64_t{next()} << (8 * i);
    return v;
  }
  // Package: returns NumElements and checks PkgLength covers the body.
  std::pair<unsigned, size_t> package() {
    if (next() != 0x12) throw std::runtime_error("not a PackageOp");
    size_t start = at;
    uint64_t len = pkg_length();
    unsigned n = next();
    return {n, start + len};
  }
};

std::vector<PrtEntry> decode_prt(const aml::Bytes& dsdt) {
  const uint8_t name_prt[] = {0x08, '_', 'P', 'R', 'T'};
  auto it = std::search(dsdt.begin(), dsdt.end(), std::begin(name_prt), std::end(name_prt));
  if (it == dsdt.end()) throw std::runtime_error("no Name(_PRT) in the DSDT");
  AmlReader r{dsdt, static_cast<size_t>(it - dsdt.begin()) + sizeof name_prt};
  auto [count, end] = r.package();
  std::vector<PrtEntry> out;
  for (unsigned i = 0; i < count; ++i) {
    auto [n, entry_end] = r.package();
    if (n != 4) throw std::runtime_error("a _PRT entry must have 4 elements");
    PrtEntry e{r.integer(), r.integer(), r.integer(), r.integer()};
    if (r.at != entry_end) throw std::runtime_error("entry PkgLength mismatch");
    out.push_back(e);
  }
  if (r.at != end) throw std::runtime_error("_PRT PkgLength mismatch");
  return out;
}

TEST(PciIntxRouting, SwizzlesPinsOverGsis16To19) {
  EXPECT_EQ(pci_intx_gsi(0, 0), 16u);
  EXPECT_EQ(pci_intx_gsi(1, 0), 17u);
  EXPECT_EQ(pci_intx_gsi(1, 3), 16u);
  EXPECT_EQ(pci_intx_gsi(3, 1), 16u);
  EXPECT_EQ(pci_intx_gsi(31, 3), 18u);
  for (uint8_t s = 0; s < kPciSlots; ++s)
    for (uint8_t p = 0; p < kPciIntxPins; ++p) {
      EXPECT_NE(pci_intx_gsi(s, p), kGsiGed);
      EXPECT_GE(pci_intx_gsi(s, p), 16u);
      EXPECT_LT(pci_intx_gsi(s, p), 20u);
    }
}

TEST(PciIntxRouting, PrtEntryBytesFollowTheSpec) {
  auto dsdt = build_dsdt_aml({});
  ASSERT_TRUE(dsdt) << dsdt.error().what();
  // Slot 1 INTA#: Package(4) {0x0001FFFF, Zero, Zero, 17}.
  const uint8_t want[] = {0x12, 0x0b, 0x04, 0x0c, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x11};
  EXPECT_NE(std::search(dsdt->begin(), dsdt->end(), std::begin(want), std::end(want)), dsdt->end());
  // The _PRT sits inside \_SB.PCI0: after the host bridge's _HID, before MBRD.
  const uint8_t hid[] = {'P', 'C', 'I', '0'};
  const uint8_t prt[] = {'_', 'P', 'R', 'T'};
  const uint8_t mbrd[] = {'M', 'B', 'R', 'D'};
  auto p0 = std::search(dsdt->begin(), dsdt->end(), std::begin(hid), std::end(hid));
  auto pr = std::search(dsdt->begin(), dsdt->end(), std::begin(prt), std::end(prt));
  auto mb = std::search(dsdt->begin(), dsdt->end(), std::begin(mbrd), std::end(mbrd));
  EXPECT_LT(p0, pr);
  EXPECT_LT(pr, mb);
}

TEST(PciIntxRouting, PrtCoversEverySlotAndPinWithTheMachinesGsi) {
  auto dsdt = build_dsdt_aml({});
  ASSERT_TRUE(dsdt) << dsdt.error().what();
  std::vector<PrtEntry> prt = decode_prt(*dsdt);
  ASSERT_EQ(prt.size(), size_t{kPciSlots} * kPciIntxPins);
  std::vector<bool> seen(prt.size());
  for (const PrtEntry& e : prt) {
    EXPECT_EQ(e.address & 0xffff, 0xffffu) << "any function of the slot (§6.2.13)";
    uint64_t slot = e.address >> 16;
    ASSERT_LT(slot, kPciSlots);
    ASSERT_LT(e.pin, kPciIntxPins);
    EXPECT_EQ(e.source, 0u) << "a GSI, not a link device";
    EXPECT_EQ(e.gsi, pci_intx_gsi(static_cast<uint8_t>(slot), static_cast<uint8_t>(e.pin)))
        << "slot " << slot << " pin " << e.pin;
    size_t idx = slot * kPciIntxPins + e.pin;
    EXPECT_FALSE(seen[idx]) << "duplicate entry for slot " << slot << " pin " << e.pin;
    seen[idx] = true;
  }
}

}  // namespace
}  // namespace skiff::x86

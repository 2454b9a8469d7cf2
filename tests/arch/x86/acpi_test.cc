#include "arch/x86/acpi.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "arch/x86/layout.h"

namespace skiff::x86 {
namespace {

// 1 MiB of guest RAM from 0: holds the RSDP and the ACPI area.
struct Guest {
  std::vector<uint8_t> ram = std::vector<uint8_t>(kHighMemStart, 0);
  GuestMemory mem = *GuestMemory::create({{0, ram.size(), ram.data()}});

  uint64_t u(uint64_t gpa, size_t len) const {
    uint64_t v = 0;
    for (size_t i = 0; i < len; ++i) v |= uint64_t{ram.at(gpa + i)} << (8 * i);
    return v;
  }
  std::string str(uint64_t gpa, size_t len) const {
    return std::string(reinterpret_cast<const char*>(&ram.at(gpa)), len);
  }
  uint8_t sum(uint64_t gpa, size_t len) const {
    uint8_t s = 0;
    for (size_t i = 0; i < len; ++i) s = static_cast<uint8_t>(s + ram.at(gpa + i));
    return s;
  }
};

// Walks RSDP -> XSDT -> tables (and FADT -> DSDT) the way a guest does,
// checking the pointers stay in RAM; signature -> address.
std::map<std::string, uint64_t> walk(const Guest& g, uint64_t rsdp) {
  std::map<std::string, uint64_t> tables;
  EXPECT_EQ(g.str(rsdp, 8), "RSD PTR ");
  uint64_t xsdt = g.u(rsdp + 24, 8);
  EXPECT_LT(xsdt, g.ram.size());
  EXPECT_EQ(g.str(xsdt, 4), "XSDT");
  tables["XSDT"] = xsdt;
  uint64_t xsdt_len = g.u(xsdt + 4, 4);
  EXPECT_EQ((xsdt_len - 36) % 8, 0u);
  for (uint64_t off = 36; off + 8 <= xsdt_len; off += 8) {
    uint64_t addr = g.u(xsdt + off, 8);
    EXPECT_LT(addr, g.ram.size());
    if (addr >= g.ram.size()) continue;
    tables[g.str(addr, 4)] = addr;
  }
  if (tables.contains("FACP")) {
    uint64_t dsdt = g.u(tables["FACP"] + 140, 8);
    EXPECT_LT(dsdt, g.ram.size());
    if (dsdt < g.ram.size()) tables[g.str(dsdt, 4)] = dsdt;
  }
  return tables;
}

struct Written {
  Guest g;
  uint64_t rsdp = 0;
  std::map<std::string, uint64_t> tables;
};

std::unique_ptr<Written> write(const AcpiConfig& c) {
  auto w = std::make_unique<Written>();
  auto r = write_acpi_tables(w->g.mem, c);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  if (!r) return w;
  w->rsdp = *r;
  w->tables = walk(w->g, *r);
  return w;
}

TEST(AcpiTables, RsdpIsRevision2AtTheLegacyAddressWithBothChecksums) {
  auto w = write({});
  EXPECT_EQ(w->rsdp, kRsdpAddr);
  EXPECT_EQ(w->g.u(kRsdpAddr + 15, 1), 2u);   // Revision
  EXPECT_EQ(w->g.u(kRsdpAddr + 20, 4), 36u);  // Length
  EXPECT_EQ(w->g.str(kRsdpAddr + 9, 6), "SKIFF ");
  EXPECT_EQ(w->g.sum(kRsdpAddr, 20), 0);
  EXPECT_EQ(w->g.sum(kRsdpAddr, 36), 0);
}

TEST(AcpiTables, ChainReachesEveryTable) {
  auto w = write({});
  for (const char* sig : {"XSDT", "FACP", "DSDT", "APIC", "MCFG"})
    EXPECT_TRUE(w->tables.contains(sig)) << sig;
  EXPECT_EQ(w->tables.size(), 5u);
}

TEST(AcpiTables, EveryTableChecksumSumsToZero) {
  AcpiConfig c;
  c.boot_cpus = 3;
  c.pci_mmio64_start = 0x8000000000;
  c.pci_mmio64_size = 0x4000000000;
  auto w = write(c);
  for (const auto& [sig, addr] : w->tables) {
    uint64_t len = w->g.u(addr + 4, 4);
    EXPECT_EQ(w->g.sum(addr, len), 0) << sig;
    EXPECT_EQ(w->g.str(addr + 10, 6), "SKIFF ") << sig;
  }
}

TEST(AcpiTables, TablesAreAlignedInsideTheAcpiArea) {
  auto w = write({});
  for (const auto& [sig, addr] : w->tables) {
    EXPECT_EQ(addr % 8, 0u) << sig;
    EXPECT_GE(addr, kAcpiTablesAddr) << sig;
    EXPECT_LE(addr + w->g.u(addr + 4, 4), kAcpiTablesEnd) << sig;
  }
}

TEST(AcpiTables, FadtIsHwReducedWithSleepAndResetRegisters) {
  auto w = write({});
  uint64_t f = w->tables.at("FACP");
  EXPECT_EQ(w->g.u(f + 4, 4), 276u);  // ACPI 6.x FADT length
  EXPECT_EQ(w->g.u(f + 8, 1), 6u);    // major revision
  EXPECT_EQ(w->g.u(f + 131, 1), 5u);  // minor revision
  uint32_t flags = static_cast<uint32_t>(w->g.u(f + 112, 4));
  EXPECT_TRUE(flags & (1u << 20)) << "HW_REDUCED_ACPI";
  EXPECT_TRUE(flags & (1u << 10)) << "RESET_REG_SUP";
  auto expect_io_gas = [&](uint64_t off, uint16_t port) {
    EXPECT_EQ(w->g.u(f + off, 1), 1u);  // System I/O
    EXPECT_EQ(w->g.u(f + off + 1, 1), 8u);
    EXPECT_EQ(w->g.u(f + off + 4, 8), port);
  };
  expect_io_gas(116, kPortAcpiReset);
  EXPECT_EQ(w->g.u(f + 128, 1), kAcpiResetValue);
  expect_io_gas(244, kPortAcpiSleepControl);
  expect_io_gas(256, kPortAcpiSleepStatus);
  EXPECT_EQ(w->g.str(w->g.u(f + 140, 8), 4), "DSDT");
  EXPECT_EQ(w->g.u(f + 46, 2), 9u);  // SCI_INT
}

struct MadtEntry {
  uint8_t type;
  uint64_t at;
};

std::vector<MadtEntry> madt_entries(const Written& w) {
  uint64_t m = w.tables.at("APIC");
  uint64_t len = w.g.u(m + 4, 4);
  std::vector<MadtEntry> out;
  for (uint64_t off = 44; off < len;) {
    uint64_t elen = w.g.u(m + off + 1, 1);
    EXPECT_GE(elen, 2u);
    if (elen < 2) break;
    out.push_back({static_cast<uint8_t>(w.g.u(m + off, 1)), m + off});
    off += elen;
  }
  return out;
}

class MadtPerVcpuCount : public testing::TestWithParam<uint32_t> {};

TEST_P(MadtPerVcpuCount, HasOneEnabledLocalApicPerVcpuWithDistinctIds) {
  AcpiConfig c;
  c.boot_cpus = GetParam();
  auto w = write(c);
  std::set<uint64_t> ids, uids;
  for (const auto& e : madt_entries(*w)) {
    if (e.type != 0) continue;
    uids.insert(w->g.u(e.at + 2, 1));
    ids.insert(w->g.u(e.at + 3, 1));
    EXPECT_EQ(w->g.u(e.at + 4, 4), 1u);  // Enabled
  }
  EXPECT_EQ(ids.size(), GetParam());
  EXPECT_EQ(uids.size(), GetParam());
}

INSTANTIATE_TEST_SUITE_P(Counts, MadtPerVcpuCount, testing::Values(1u, 2u, 4u, 8u, 64u));

TEST(AcpiMadt, MarksCpusAboveBootCountOnlineCapable) {
  AcpiConfig c;
  c.boot_cpus = 2;
  c.max_cpus = 4;
  auto w = write(c);
  std::vector<uint64_t> flags;
  for (const auto& e : madt_entries(*w))
    if (e.type == 0) flags.push_back(w->g.u(e.at + 4, 4));
  EXPECT_EQ(flags, (std::vector<uint64_t>{1, 1, 2, 2}));
}

TEST(AcpiMadt, UsesTheTopologysApicIds) {
  AcpiConfig c;
  c.boot_cpus = 6;
  c.topology = CpuTopology{1, 3, 1, 2};  // 3 cores per socket: core field is 2 bits
  auto w = write(c);
  std::vector<uint64_t> ids;
  for (const auto& e : madt_entries(*w))
    if (e.type == 0) ids.push_back(w->g.u(e.at + 3, 1));
  EXPECT_EQ(ids, (std::vector<uint64_t>{0, 1, 2, 4, 5, 6}));
}

TEST(AcpiMadt, DescribesIoapicOverridesAndNmi) {
  auto w = write({});
  uint64_t m = w->tables.at("APIC");
  EXPECT_EQ(w->g.u(m + 36, 4), kLapicAddr);
  EXPECT_EQ(w->g.u(m + 40, 4), 1u);  // PCAT_COMPAT
  int ioapics = 0, nmis = 0;
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> isos;  // irq -> {gsi, flags}
  for (const auto& e : madt_entries(*w)) {
    if (e.type == 1) {
      ++ioapics;
      EXPECT_EQ(w->g.u(e.at + 4, 4), kIoapicAddr);
      EXPECT_EQ(w->g.u(e.at + 8, 4), 0u);  // GSI base
    } else if (e.type == 2) {
      isos[w->g.u(e.at + 3, 1)] = {w->g.u(e.at + 4, 4), w->g.u(e.at + 8, 2)};
    } else if (e.type == 4) {
      ++nmis;
      EXPECT_EQ(w->g.u(e.at + 2, 1), 0xffu);  // all processors
      EXPECT_EQ(w->g.u(e.at + 5, 1), 1u);     // LINT1
    }
  }
  EXPECT_EQ(ioapics, 1);
  EXPECT_EQ(nmis, 1);
  ASSERT_TRUE(isos.contains(0) && isos.contains(9));
  EXPECT_EQ(isos[0].first, 2u);
  EXPECT_EQ(isos[9].first, 9u);
  EXPECT_EQ(isos[9].second & 0x3, 1u);         // active high
  EXPECT_EQ((isos[9].second >> 2) & 0x3, 3u);  // level triggered
}

TEST(AcpiMcfg, DescribesTheEcamForBus0) {
  auto w = write({});
  uint64_t m = w->tables.at("MCFG");
  EXPECT_EQ(w->g.u(m + 4, 4), 60u);  // header + reserved + one allocation
  EXPECT_EQ(w->g.u(m + 44, 8), kPciEcamBase);
  EXPECT_EQ(w->g.u(m + 52, 2), 0u);  // segment
  EXPECT_EQ(w->g.u(m + 54, 1), 0u);  // start bus
  EXPECT_EQ(w->g.u(m + 55, 1), 0u);  // end bus
}

TEST(AcpiDsdt, ContainsAWellFormedS5Package) {
  auto w = write({});
  uint64_t d = w->tables.at("DSDT");
  std::string body = w->g.str(d + 36, w->g.u(d + 4, 4) - 36);
  // NameOp, RootChar, "_S5_", PackageOp.
  size_t at = body.find(std::string("\x08\\_S5_\x12", 7));
  ASSERT_NE(at, std::string::npos);
  auto b = [&](size_t i) { return static_cast<uint8_t>(body.at(at + 7 + i)); };
  ASSERT_EQ(b(0) >> 6, 0) << "small package: one-byte PkgLength";
  EXPECT_EQ(b(0), 1 + 1 + 2 + 1 + 1 + 1);  // PkgLength, count, 0x0a 0x05, three ZeroOps
  EXPECT_EQ(b(1), 4);                      // NumElements
  EXPECT_EQ(b(2), 0x0a);                   // BytePrefix
  EXPECT_EQ(b(3), kAcpiS5SleepType);
}

TEST(AcpiDsdt, ExtraDevicesLandInTheSystemBus) {
  AcpiConfig c;
  auto ged = aml::device("GED0", {aml::name("_HID", aml::string("ACPI0013"))});
  ASSERT_TRUE(ged);
  c.extra_devices.push_back(*ged);
  auto plain = build_dsdt_aml({});
  auto with = build_dsdt_aml(c);
  ASSERT_TRUE(plain && with);
  EXPECT_EQ(with->size(), plain->size() + ged->size());
  std::string s(with->begin(), with->end());
  EXPECT_NE(s.find("GED0"), std::string::npos);
}

TEST(AcpiTables, FailCleanlyWhenTheyDoNotFit) {
  AcpiConfig c;
  auto huge = aml::device("HUGE", {aml::buffer(aml::Bytes(kAcpiTablesEnd - kAcpiTablesAddr))});
  ASSERT_TRUE(huge);
  c.extra_devices.push_back(*huge);
  Guest g;
  auto r = write_acpi_tables(g.mem, c);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("do not fit"), std::string::npos) << r.error().message;
  EXPECT_EQ(g.u(kRsdpAddr, 8), 0u) << "no RSDP written";
  EXPECT_EQ(g.u(kAcpiTablesAddr, 8), 0u) << "no table written";
}

TEST(AcpiTables, FailWhenGuestRamLacksTheAcpiArea) {
  std::vector<uint8_t> low(kEbdaStart);
  auto mem = GuestMemory::create({{0, low.size(), low.data()}});
  ASSERT_TRUE(mem);
  EXPECT_FALSE(write_acpi_tables(*mem, {}));
}

TEST(AcpiTables, RejectInconsistentConfigs) {
  Guest g;
  AcpiConfig none;
  none.boot_cpus = 0;
  EXPECT_FALSE(write_acpi_tables(g.mem, none));
  AcpiConfig shrink;
  shrink.boot_cpus = 4;
  shrink.max_cpus = 2;
  EXPECT_FALSE(write_acpi_tables(g.mem, shrink));
  AcpiConfig too_many;
  too_many.boot_cpus = 300;
  EXPECT_FALSE(write_acpi_tables(g.mem, too_many));
  AcpiConfig wraps;
  wraps.pci_mmio64_start = 0xffff'ffff'0000'0000;
  wraps.pci_mmio64_size = 0x1'0000'0000'0000;
  EXPECT_FALSE(write_acpi_tables(g.mem, wraps));
  AcpiConfig low_window;
  low_window.pci_mmio64_start = 0x1000;
  low_window.pci_mmio64_size = 0x1000;
  EXPECT_FALSE(write_acpi_tables(g.mem, low_window));
}

}  // namespace
}  // namespace skiff::x86

// Independent check of the generated tables: ACPICA's iasl (Debian's
// acpica-tools, installed by scripts/setup) disassembles each table, and
// the DSDT's disassembly is compiled back. iasl is the reference the Linux
// kernel's own ACPI interpreter comes from.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"

namespace skiff::x86 {
namespace {

namespace fs = std::filesystem;

struct CommandResult {
  int status = -1;
  std::string output;
};

CommandResult run(const std::string& cmd) {
  CommandResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class AcpiIasl : public testing::Test {
 protected:
  void SetUp() override {
    if (run("command -v iasl").status != 0)
      GTEST_SKIP() << "iasl not found: install acpica-tools (scripts/setup) to check the tables";
    std::string tmpl = (fs::path(testing::TempDir()) / "skiff-acpi-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (getenv("SKIFF_KEEP_ACPI")) return;  // leave the .dat/.dsl files to look at
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Writes the tables for `c` and dumps each one to <dir>/<sig>.dat.
  std::vector<std::string> dump(const AcpiConfig& c) {
    std::vector<uint8_t> ram(kHighMemStart);
    auto mem = GuestMemory::create({{0, ram.size(), ram.data()}});
    auto rsdp = write_acpi_tables(*mem, c);
    EXPECT_TRUE(rsdp) << (rsdp ? "" : rsdp.error().message);
    if (!rsdp) return {};
    auto u = [&](uint64_t a, size_t n) {
      uint64_t v = 0;
      for (size_t i = 0; i < n; ++i) v |= uint64_t{ram.at(a + i)} << (8 * i);
      return v;
    };
    std::vector<uint64_t> addrs;
    uint64_t xsdt = u(*rsdp + 24, 8);
    addrs.push_back(xsdt);
    for (uint64_t off = 36; off < u(xsdt + 4, 4); off += 8) addrs.push_back(u(xsdt + off, 8));
    for (uint64_t a : std::vector(addrs))
      if (std::string(reinterpret_cast<char*>(&ram[a]), 4) == "FACP")
        addrs.push_back(u(a + 140, 8));
    std::vector<std::string> sigs;
    for (uint64_t a : addrs) {
      std::string sig(reinterpret_cast<char*>(&ram[a]), 4);
      std::ofstream f(dir_ / (sig + ".dat"), std::ios::binary);
      f.write(reinterpret_cast<char*>(&ram[a]), static_cast<std::streamsize>(u(a + 4, 4)));
      sigs.push_back(sig);
    }
    // The RSDP is not a table iasl reads from a binary file (it has no
    // table header); acpi_test.cc checks it.
    return sigs;
  }

  CommandResult disassemble(const std::string& sig) {
    return run("cd " + dir_.string() + " && iasl -d " + sig + ".dat");
  }

  fs::path dir_;
};

TEST_F(AcpiIasl, DisassemblesEveryTableWithoutErrors) {
  AcpiConfig c;
  c.boot_cpus = 4;
  c.pci_mmio64_start = 0x8000000000;
  c.pci_mmio64_size = 0x4000000000;
  auto sigs = dump(c);
  ASSERT_EQ(sigs.size(), 5u);  // XSDT, FACP, APIC, MCFG, DSDT
  for (const auto& sig : sigs) {
    CommandResult r = disassemble(sig);
    EXPECT_EQ(r.status, 0) << sig << ":\n" << r.output;
    EXPECT_EQ(r.output.find("Error"), std::string::npos) << sig << ":\n" << r.output;
    std::string dsl = slurp(dir_ / (sig + ".dsl"));
    EXPECT_FALSE(dsl.empty()) << sig;
    // iasl flags checksum and length problems inside the listing.
    EXPECT_EQ(dsl.find("Incorrect checksum"), std::string::npos) << sig << ":\n" << dsl;
    EXPECT_EQ(dsl.find("Invalid"), std::string::npos) << sig << ":\n" << dsl;
  }
}

TEST_F(AcpiIasl, DsdtDisassemblyNamesTheDevicesAndRecompiles) {
  AcpiConfig c;
  c.pci_mmio64_start = 0x8000000000;
  c.pci_mmio64_size = 0x4000000000;
  dump(c);
  CommandResult r = disassemble("DSDT");
  ASSERT_EQ(r.status, 0) << r.output;
  std::string dsl = slurp(dir_ / "DSDT.dsl");
  for (const char* want : {"_S5_", "PNP0A08", "PNP0A03", "PNP0501", "PNP0C0C", "PNP0C02",
                           "WordBusNumber", "QWordMemory", "0x0CF7", "0x0D00"})
    EXPECT_NE(dsl.find(want), std::string::npos) << want << " missing from:\n" << dsl;
  // Compiling the listing back runs iasl's semantic checks on it (resource
  // descriptor consistency, reserved names' types).
  CommandResult back = run("cd " + dir_.string() + " && iasl -p recompiled DSDT.dsl");
  EXPECT_EQ(back.status, 0) << back.output;
  EXPECT_NE(back.output.find(" 0 Errors"), std::string::npos) << back.output;
}

// \_SB.PCI0._PRT (pci_irq_test.cc checks it entry by entry): iasl shows
// the 128 entries; two of them as it prints them.
TEST_F(AcpiIasl, DsdtDisassemblyShowsThePciRoutingTable) {
  dump({});
  ASSERT_EQ(disassemble("DSDT").status, 0);
  std::string dsl = slurp(dir_ / "DSDT.dsl");
  EXPECT_NE(dsl.find("Name (_PRT, Package (0x80)"), std::string::npos) << dsl;
  std::string flat = dsl;
  std::erase_if(flat, [](char ch) { return std::isspace(static_cast<unsigned char>(ch)); });
  // Slot 1 INTA# -> GSI 17 (0x11); slot 31 INTD# -> GSI 18 (0x12).
  EXPECT_NE(flat.find("Package(0x04){0x0001FFFF,Zero,Zero,0x11}"), std::string::npos) << dsl;
  EXPECT_NE(flat.find("Package(0x04){0x001FFFFF,0x03,Zero,0x12}"), std::string::npos) << dsl;
}

TEST_F(AcpiIasl, FadtDisassemblyShowsHwReducedAndTheRegisters) {
  dump({});
  ASSERT_EQ(disassemble("FACP").status, 0);
  std::string dsl = slurp(dir_ / "FACP.dsl");
  EXPECT_NE(dsl.find("Hardware Reduced (V5) : 1"), std::string::npos) << dsl;
  EXPECT_NE(dsl.find("0000000000000600"), std::string::npos) << dsl;  // sleep control
  EXPECT_NE(dsl.find("0000000000000602"), std::string::npos) << dsl;  // reset
}

TEST_F(AcpiIasl, SratAndSlitDisassembleWithTheirEntries) {
  AcpiConfig c;
  c.boot_cpus = 4;
  c.topology = CpuTopology{1, 3, 1, 2};  // 6 vCPUs: APIC IDs 0,1,2,4,5,6
  c.max_cpus = 6;
  c.numa_nodes = {{{0, 1, 2}, {{0, 0x80000000}}, {10, 21}},
                  {{3, 4, 5}, {{0x100000000, 0x40000000}}, {21, 10}}};
  auto sigs = dump(c);
  ASSERT_EQ(sigs.size(), 7u);  // + SRAT, SLIT
  for (const char* sig : {"SRAT", "SLIT"}) {
    CommandResult r = disassemble(sig);
    ASSERT_EQ(r.status, 0) << sig << ":\n" << r.output;
    std::string dsl = slurp(dir_ / (std::string(sig) + ".dsl"));
    EXPECT_EQ(dsl.find("Incorrect checksum"), std::string::npos) << dsl;
    EXPECT_EQ(dsl.find("Invalid"), std::string::npos) << dsl;
    EXPECT_EQ(dsl.find("**** Unknown"), std::string::npos) << dsl;
  }
  std::string srat = slurp(dir_ / "SRAT.dsl");
  // iasl prints one "Subtable Type" block per entry: 6 processors + 2 ranges.
  size_t processors = 0, memories = 0;
  for (size_t p = 0; (p = srat.find("Processor Local APIC/SAPIC Affinity", p)) != std::string::npos;
       ++p)
    ++processors;
  for (size_t p = 0; (p = srat.find("Memory Affinity", p)) != std::string::npos; ++p) ++memories;
  EXPECT_EQ(processors, 6u) << srat;
  EXPECT_EQ(memories, 2u) << srat;
  EXPECT_NE(srat.find("Apic ID : 06"), std::string::npos) << srat;  // vCPU 5, socket 1 core 2
  EXPECT_NE(srat.find("Base Address : 0000000100000000"), std::string::npos) << srat;
  EXPECT_NE(srat.find("Address Length : 0000000040000000"), std::string::npos) << srat;
  std::string slit = slurp(dir_ / "SLIT.dsl");
  EXPECT_NE(slit.find("Localities : 0000000000000002"), std::string::npos) << slit;
  EXPECT_NE(slit.find("Locality   0 : 0A 15"), std::string::npos) << slit;
  EXPECT_NE(slit.find("Locality   1 : 15 0A"), std::string::npos) << slit;
}

}  // namespace
}  // namespace skiff::x86

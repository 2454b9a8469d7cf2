// The GED's AML (arch/x86/ged_aml.h): encoded bytes of the parts the guest
// depends on, and ACPICA's iasl as the independent reader of the whole DSDT
// with the GED in it (disassembles, names the pieces, recompiles cleanly).
#include "arch/x86/ged_aml.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"

namespace skiff::x86 {
namespace {

namespace fs = std::filesystem;

bool contains(const aml::Bytes& hay, const aml::Bytes& needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

TEST(GedAml, EncodesLevelHighExtendedInterruptForTheGsi) {
  auto t = ged_device({.gsi = 0x14, .port = 0x608, .power_button_bit = 1});
  ASSERT_TRUE(t) << t.error().message;
  // §6.4.3.6: tag 0x89, length 6, consumer|level|high|exclusive, 1 interrupt, GSI 20.
  EXPECT_TRUE(contains(*t, {0x89, 0x06, 0x00, 0x01, 0x01, 0x14, 0x00, 0x00, 0x00}));
}

TEST(GedAml, RegionIsOneSystemIoByteAtThePort) {
  auto t = ged_device({.gsi = 20, .port = 0x608, .power_button_bit = 1});
  ASSERT_TRUE(t);
  // ExtOp OpRegion "GDST" SystemIO WordConst(0x0608) One
  EXPECT_TRUE(contains(*t, {0x5b, 0x80, 'G', 'D', 'S', 'T', 0x01, 0x0b, 0x08, 0x06, 0x01}));
}

TEST(GedAml, EvtNotifiesThePowerButtonWith0x80) {
  auto t = ged_device({.gsi = 20, .port = 0x608, .power_button_bit = 1});
  ASSERT_TRUE(t);
  // Notify (\_SB.PWRB, 0x80): NotifyOp, DualNamePath from root, BytePrefix 0x80.
  EXPECT_TRUE(contains(*t, {0x86, '\\', 0x2e, '_', 'S', 'B', '_', 'P', 'W', 'R', 'B', 0x0a, 0x80}));
  // _EVT takes one argument and is serialized.
  EXPECT_TRUE(contains(*t, {'_', 'E', 'V', 'T', 0x09}));
}

TEST(GedAml, RejectsAZeroEventBit) {
  EXPECT_FALSE(ged_device({.gsi = 20, .port = 0x608, .power_button_bit = 0}));
}

std::string run(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

TEST(GedAmlIasl, DsdtWithGedDisassemblesAndRecompiles) {
  int st = 0;
  run("command -v iasl", &st);
  if (st != 0) GTEST_SKIP() << "iasl not found: install acpica-tools (scripts/setup)";
  std::string tmpl = (fs::path(::testing::TempDir()) / "skiff-ged-XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  fs::path dir = tmpl;

  AcpiConfig c;
  auto ged = ged_device({.gsi = kGsiGed, .port = kPortGed, .power_button_bit = 1});
  ASSERT_TRUE(ged);
  c.extra_devices.push_back(*ged);
  std::vector<uint8_t> ram(kHighMemStart);
  auto mem = GuestMemory::create({{0, ram.size(), ram.data()}});
  ASSERT_TRUE(mem);
  ASSERT_TRUE(write_acpi_tables(*mem, c));
  // Find the DSDT by signature in the table area and dump it whole.
  size_t at = 0;
  for (size_t a = kAcpiTablesAddr; a + 8 < kAcpiTablesEnd; ++a)
    if (std::equal(ram.begin() + a, ram.begin() + a + 4, "DSDT")) {
      at = a;
      break;
    }
  ASSERT_NE(at, 0u);
  uint32_t len = ram[at + 4] | ram[at + 5] << 8 | ram[at + 6] << 16 | uint32_t{ram[at + 7]} << 24;
  {
    std::ofstream f(dir / "DSDT.dat", std::ios::binary);
    f.write(reinterpret_cast<char*>(&ram[at]), len);
  }
  std::string out = run("cd " + dir.string() + " && iasl -d DSDT.dat", &st);
  ASSERT_EQ(st, 0) << out;
  std::stringstream ss;
  ss << std::ifstream(dir / "DSDT.dsl").rdbuf();
  std::string dsl = ss.str();
  for (const char* want :
       {"Device (GED0)", "\"ACPI0013\"",
        "Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive", "0x00000014",
        "OperationRegion (GDST, SystemIO, 0x0608, One)", "GDAT,   8",
        "Method (_EVT, 1, Serialized)", "Notify (\\_SB.PWRB, 0x80)"})
    EXPECT_NE(dsl.find(want), std::string::npos) << want << " missing from:\n" << dsl;
  std::string back = run("cd " + dir.string() + " && iasl -p recompiled DSDT.dsl", &st);
  EXPECT_EQ(st, 0) << back;
  EXPECT_NE(back.find(" 0 Errors"), std::string::npos) << back;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace skiff::x86

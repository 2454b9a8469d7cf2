// SRAT and SLIT bytes (ACPI 6.5 §5.2.16, §5.2.17): lengths, checksums,
// entries with the topology's APIC IDs, distance matrix, XSDT references,
// and configs the tables cannot describe.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"

namespace skiff::x86 {
namespace {

struct Tables {
  std::vector<uint8_t> ram = std::vector<uint8_t>(kHighMemStart, 0);
  GuestMemory mem = *GuestMemory::create({{0, ram.size(), ram.data()}});
  std::map<std::string, uint64_t> at;  // signature -> address, from the XSDT

  uint64_t u(uint64_t gpa, size_t len) const {
    uint64_t v = 0;
    for (size_t i = 0; i < len; ++i) v |= uint64_t{ram.at(gpa + i)} << (8 * i);
    return v;
  }
  bool write(const AcpiConfig& c) {
    auto rsdp = write_acpi_tables(mem, c);
    EXPECT_TRUE(rsdp) << (rsdp ? "" : rsdp.error().what());
    if (!rsdp) return false;
    uint64_t xsdt = u(*rsdp + 24, 8);
    for (uint64_t off = 36; off < u(xsdt + 4, 4); off += 8) {
      uint64_t a = u(xsdt + off, 8);
      at[std::string(reinterpret_cast<const char*>(&ram[a]), 4)] = a;
    }
    return true;
  }
  uint8_t sum(uint64_t gpa) const {
    uint8_t s = 0;
    for (uint64_t i = 0; i < u(gpa + 4, 4); ++i) s = static_cast<uint8_t>(s + ram[gpa + i]);
    return s;
  }
};

// 2 sockets x 3 cores (APIC IDs 0,1,2 and 4,5,6), 4 vCPUs at boot, two nodes.
AcpiConfig two_socket_config() {
  AcpiConfig c;
  c.boot_cpus = 4;
  c.max_cpus = 6;
  c.topology = CpuTopology{1, 3, 1, 2};
  c.numa_nodes = {{{0, 1, 2}, {{0, 0x7ff00000}}, {10, 25}},
                  {{3, 4, 5}, {{0x100000000, 0x80000000}, {0x200000000, 0x1000}}, {30, 10}}};
  return c;
}

TEST(AcpiSrat, NoNumaNodesMeansNoSratOrSlit) {
  Tables t;
  ASSERT_TRUE(t.write({}));
  EXPECT_FALSE(t.at.contains("SRAT"));
  EXPECT_FALSE(t.at.contains("SLIT"));
}

TEST(AcpiSrat, ListsEachVcpusApicIdAndEachRangeOnItsNode) {
  Tables t;
  ASSERT_TRUE(t.write(two_socket_config()));
  ASSERT_TRUE(t.at.contains("SRAT"));
  uint64_t s = t.at["SRAT"];
  EXPECT_EQ(t.sum(s), 0) << "checksum";
  EXPECT_EQ(t.u(s + 8, 1), 3u);  // revision
  // 36 header + 12 reserved + 6 x 16 processor + 3 x 40 memory entries.
  ASSERT_EQ(t.u(s + 4, 4), 36u + 12 + 6 * 16 + 3 * 40);
  EXPECT_EQ(t.u(s + 36, 4), 1u);  // reserved, 1
  uint64_t p = s + 48;
  const uint32_t apic[] = {0, 1, 2, 4, 5, 6};
  for (uint32_t cpu = 0; cpu < 6; ++cpu, p += 16) {
    SCOPED_TRACE(cpu);
    EXPECT_EQ(t.u(p, 1), 0u);                     // type: Processor Local APIC Affinity
    EXPECT_EQ(t.u(p + 1, 1), 16u);                // length
    EXPECT_EQ(t.u(p + 2, 1), cpu < 3 ? 0u : 1u);  // proximity domain [7:0]
    EXPECT_EQ(t.u(p + 3, 1), apic[cpu]);          // APIC ID
    EXPECT_EQ(t.u(p + 4, 4), 1u);                 // enabled, also for hotpluggable vCPUs 4, 5
    EXPECT_EQ(t.u(p + 9, 3), 0u);                 // proximity domain [31:8]
  }
  struct {
    uint32_t domain;
    uint64_t base, length;
  } want[] = {{0, 0, 0x7ff00000}, {1, 0x100000000, 0x80000000}, {1, 0x200000000, 0x1000}};
  for (const auto& w : want) {
    SCOPED_TRACE(w.base);
    EXPECT_EQ(t.u(p, 1), 1u);  // type: Memory Affinity
    EXPECT_EQ(t.u(p + 1, 1), 40u);
    EXPECT_EQ(t.u(p + 2, 4), w.domain);
    EXPECT_EQ(t.u(p + 8, 8), w.base);
    EXPECT_EQ(t.u(p + 16, 8), w.length);
    EXPECT_EQ(t.u(p + 28, 4), 1u);  // enabled, not hot-pluggable
    p += 40;
  }
}

TEST(AcpiSlit, HoldsTheDistanceMatrixRowByRow) {
  Tables t;
  ASSERT_TRUE(t.write(two_socket_config()));
  ASSERT_TRUE(t.at.contains("SLIT"));
  uint64_t s = t.at["SLIT"];
  EXPECT_EQ(t.sum(s), 0) << "checksum";
  ASSERT_EQ(t.u(s + 4, 4), 36u + 8 + 4);
  EXPECT_EQ(t.u(s + 36, 8), 2u);
  EXPECT_EQ(t.u(s + 44, 1), 10u);
  EXPECT_EQ(t.u(s + 45, 1), 25u);
  EXPECT_EQ(t.u(s + 46, 1), 30u);
  EXPECT_EQ(t.u(s + 47, 1), 10u);
}

TEST(AcpiSrat, RefusesWhatAGuestWouldRejectOrMisread) {
  auto refuses = [](AcpiConfig c, const char* why) {
    Tables t;
    auto r = write_acpi_tables(t.mem, c);
    ASSERT_FALSE(r) << why;
    EXPECT_NE(r.error().what().find(why), std::string::npos) << r.error().what();
  };
  AcpiConfig c = two_socket_config();
  c.numa_nodes[0].distances = {10};
  refuses(c, "1 distances for 2 nodes");
  c = two_socket_config();
  c.numa_nodes[1].distances = {20, 11};
  refuses(c, "distance to itself is 11");
  c = two_socket_config();
  c.numa_nodes[0].distances = {10, 10};
  refuses(c, "must be above 10");
  c = two_socket_config();
  c.numa_nodes[1].cpus = {2, 3};
  refuses(c, "vCPU 2 is in two");
  c = two_socket_config();
  c.numa_nodes[1].cpus = {6};
  refuses(c, "vCPU 6 of 6");
  c = two_socket_config();
  c.numa_nodes[1].memory = {{0x1000, 0}};
  refuses(c, "empty or wraps");
}

}  // namespace
}  // namespace skiff::x86

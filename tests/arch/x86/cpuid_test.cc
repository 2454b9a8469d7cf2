#include "arch/x86/cpuid.h"

#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <set>

namespace skiff::x86 {
namespace {

kvm_cpuid_entry2 entry(uint32_t fn, uint32_t idx, uint32_t a, uint32_t b, uint32_t c, uint32_t d,
                       uint32_t flags = 0) {
  kvm_cpuid_entry2 e{};
  e.function = fn;
  e.index = idx;
  e.flags = flags;
  e.eax = a;
  e.ebx = b;
  e.ecx = c;
  e.edx = d;
  return e;
}

// A synthetic KVM_GET_SUPPORTED_CPUID table shaped like an Intel host's:
// host topology values that must not leak through (24 logical CPUs, APIC
// ID 0x17), MONITOR, PDCM and TSC-deadline set, a PMU, a 4-level cache.
std::vector<kvm_cpuid_entry2> supported(uint32_t max_basic = 0x1f) {
  constexpr uint32_t kSig = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  return {
      entry(0x0, 0, max_basic, 0x756e6547, 0x6c65746e, 0x49656e69),
      entry(0x1, 0, 0x000806c1, 0x17180800, 0xffba3203 | 1u << 24 | 1u << 15, 0x178bfbff),
      entry(0x4, 0, 0x1c004121, 0x01c0003f, 0x3f, 0, kSig),    // L1d
      entry(0x4, 1, 0x1c004122, 0x01c0003f, 0x3f, 0, kSig),    // L1i
      entry(0x4, 2, 0x1c004143, 0x03c0003f, 0x3ff, 0, kSig),   // L2
      entry(0x4, 3, 0x1c03c163, 0x02c0003f, 0x3fff, 6, kSig),  // L3
      entry(0x4, 4, 0, 0, 0, 0, kSig),
      entry(0x5, 0, 0x40, 0x40, 3, 0x11142120),
      entry(0x6, 0, 0x77, 2, 9, 0),
      entry(0xa, 0, 0x07300805, 0, 0, 0x603),
      entry(0xb, 0, 1, 2, 0x100, 0x17, kSig),
      entry(0xb, 1, 5, 24, 0x201, 0x17, kSig),
      entry(0x1f, 0, 1, 2, 0x100, 0x17, kSig),
      entry(0x1f, 1, 5, 24, 0x201, 0x17, kSig),
      entry(0x40000000, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d),
      entry(0x40000001, 0, 0x01007afb, 0, 0, 0),
      entry(0x80000000, 0, 0x80000008, 0, 0, 0),
      entry(0x80000001, 0, 0, 0, 0x121 | 1u << 23, 0x2c100800),
      entry(0x80000008, 0, 0x3027, 0x100d000, 0, 0),
  };
}

std::vector<kvm_cpuid_entry2> build(uint32_t index, uint32_t count, CpuTopology topo,
                                    CpuidOptions opt = {},
                                    const std::vector<kvm_cpuid_entry2>& in = supported()) {
  auto r = build_cpuid(in, index, count, topo, opt);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  return r ? *r : std::vector<kvm_cpuid_entry2>{};
}

std::optional<kvm_cpuid_entry2> find(const std::vector<kvm_cpuid_entry2>& v, uint32_t fn,
                                     uint32_t idx = 0) {
  std::optional<kvm_cpuid_entry2> found;
  for (const auto& e : v) {
    if (e.function != fn || e.index != idx) continue;
    EXPECT_FALSE(found) << std::hex << "leaf " << fn << "." << idx << " twice";
    found = e;
  }
  return found;
}

uint32_t bits(uint32_t reg, int lo, int len) {
  return (reg >> lo) & ((1u << len) - 1);
}

TEST(Cpuid, Leaf1CarriesEachVcpusApicId) {
  for (uint32_t i = 0; i < 4; ++i) {
    auto l1 = find(build(i, 4, CpuTopology::flat(4)), 0x1);
    ASSERT_TRUE(l1);
    EXPECT_EQ(bits(l1->ebx, 24, 8), i);
    EXPECT_EQ(bits(l1->ebx, 8, 8), 8u) << "CLFLUSH size passes through";
  }
}

TEST(Cpuid, Leaf1LogicalCountAndHttFollowTheTopology) {
  auto one = find(build(0, 1, CpuTopology::flat(1)), 0x1);
  EXPECT_EQ(bits(one->ebx, 16, 8), 1u);
  EXPECT_FALSE(one->edx & (1u << 28));
  auto four = find(build(0, 4, CpuTopology::flat(4)), 0x1);
  EXPECT_EQ(bits(four->ebx, 16, 8), 4u);
  EXPECT_TRUE(four->edx & (1u << 28));
}

TEST(Cpuid, Leaf1SetsHypervisorAndHidesMonitorAndPdcm) {
  auto out = build(0, 1, CpuTopology::flat(1));
  auto l1 = find(out, 0x1);
  EXPECT_TRUE(l1->ecx & (1u << 31));
  EXPECT_FALSE(l1->ecx & (1u << 3));
  EXPECT_FALSE(l1->ecx & (1u << 15));
  auto l5 = find(out, 0x5);
  EXPECT_EQ(l5->eax | l5->ebx | l5->ecx | l5->edx, 0u);
}

TEST(Cpuid, TscDeadlineFollowsKvmsCapability) {
  auto off = find(build(0, 1, CpuTopology::flat(1), {.tsc_deadline_timer = false}), 0x1);
  EXPECT_FALSE(off->ecx & (1u << 24));
  auto tbl = supported();
  tbl[1].ecx &= ~(1u << 24);  // KVM's table never has it; the capability decides
  auto on = find(build(0, 1, CpuTopology::flat(1), {.tsc_deadline_timer = true}, tbl), 0x1);
  EXPECT_TRUE(on->ecx & (1u << 24));
}

// Checks leaf 0xB for vCPU `i` of a topology with `smt` SMT-level bits.
void expect_leaf_b(const std::vector<kvm_cpuid_entry2>& out, uint32_t apic, uint32_t smt_shift,
                   uint32_t threads, uint32_t pkg_shift, uint32_t logical) {
  auto s0 = find(out, 0xb, 0), s1 = find(out, 0xb, 1), s2 = find(out, 0xb, 2);
  ASSERT_TRUE(s0 && s1 && s2);
  EXPECT_EQ(bits(s0->ecx, 8, 8), 1u);  // SMT
  EXPECT_EQ(bits(s0->eax, 0, 5), smt_shift);
  EXPECT_EQ(bits(s0->ebx, 0, 16), threads);
  EXPECT_EQ(bits(s1->ecx, 8, 8), 2u);  // core
  EXPECT_EQ(bits(s1->ecx, 0, 8), 1u);
  EXPECT_EQ(bits(s1->eax, 0, 5), pkg_shift);
  EXPECT_EQ(bits(s1->ebx, 0, 16), logical);
  EXPECT_EQ(bits(s2->ecx, 8, 8), 0u);  // invalid: end of the list
  EXPECT_EQ(bits(s2->ecx, 0, 8), 2u);
  for (const auto& s : {*s0, *s1, *s2}) {
    EXPECT_EQ(s.edx, apic);
    EXPECT_TRUE(s.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
  }
}

class CpuidFlat : public testing::TestWithParam<uint32_t> {};

TEST_P(CpuidFlat, TopologyLeavesDescribeOneSocketOfSingleThreadedCores) {
  uint32_t n = GetParam();
  uint32_t shift = n == 1 ? 0 : 32 - static_cast<uint32_t>(__builtin_clz(n - 1));
  std::set<uint32_t> ids;
  for (uint32_t i = 0; i < n; ++i) {
    auto out = build(i, n, CpuTopology::flat(n));
    expect_leaf_b(out, i, 0, 1, shift, n);
    EXPECT_EQ(i >> shift, 0u) << "every vCPU in package 0";
    ids.insert(find(out, 0xb, 0)->edx);
    // Leaf 0x1F mirrors 0xB when there is one die.
    EXPECT_EQ(find(out, 0x1f, 1)->eax, find(out, 0xb, 1)->eax);
    EXPECT_EQ(bits(find(out, 0x1f, 2)->ecx, 8, 8), 0u);
  }
  EXPECT_EQ(ids.size(), n);
}

INSTANTIATE_TEST_SUITE_P(Counts, CpuidFlat, testing::Values(1u, 2u, 4u, 8u));

TEST(Cpuid, TwoThreadsPerCoreShareACore) {
  CpuTopology t{2, 2, 1, 1};
  auto out = build(3, 4, t);
  expect_leaf_b(out, 3, 1, 2, 2, 4);  // thread 1 of core 1
  auto l4 = find(out, 0x4, 0);
  EXPECT_EQ(bits(l4->eax, 14, 12) + 1, 2u) << "L1 shared by the core's two threads";
  EXPECT_EQ(bits(l4->eax, 26, 6) + 1, 2u) << "two cores per package";
  auto l3 = find(out, 0x4, 3);
  EXPECT_EQ(bits(l3->eax, 14, 12) + 1, 4u) << "L3 shared by the package";
  EXPECT_EQ(bits(find(out, 0x1)->ebx, 16, 8), 4u);
}

TEST(Cpuid, Leaf1FAddsADieLevelForMultiDieSockets) {
  CpuTopology t{1, 2, 2, 1};
  auto out = build(2, 4, t);  // core 0 of die 1
  auto core = find(out, 0x1f, 1), die = find(out, 0x1f, 2), end = find(out, 0x1f, 3);
  ASSERT_TRUE(core && die && end);
  EXPECT_EQ(bits(core->eax, 0, 5), 1u);
  EXPECT_EQ(bits(core->ebx, 0, 16), 2u);
  EXPECT_EQ(bits(die->ecx, 8, 8), 5u);  // die
  EXPECT_EQ(bits(die->eax, 0, 5), 2u);
  EXPECT_EQ(bits(die->ebx, 0, 16), 4u);
  EXPECT_EQ(bits(end->ecx, 8, 8), 0u);
  EXPECT_EQ(die->edx, 2u);
}

TEST(Cpuid, NonPowerOfTwoCountsLeaveGapsInTheApicIds) {
  // --cpus topology=2:3:1:2: thread bit 0, core bits 1-2 (3 cores need 2
  // bits), package from bit 3. Expected IDs written out, not computed by
  // apic_id(), so a change to the packing shows here.
  CpuTopology t{2, 3, 1, 2};
  const uint32_t want[] = {0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13};
  for (uint32_t i = 0; i < 12; ++i) {
    SCOPED_TRACE(i);
    auto out = build(i, 12, t);
    EXPECT_EQ(apic_id(t, i), want[i]);
    expect_leaf_b(out, want[i], 1, 2, 3, 6);
    EXPECT_EQ(bits(find(out, 0x1)->ebx, 24, 8), want[i]) << "leaf 1 agrees with leaf 0xB";
    EXPECT_EQ(bits(find(out, 0x1)->ebx, 16, 8), 6u);
    // Leaf 0x1F has one die: the same levels as 0xB.
    EXPECT_EQ(find(out, 0x1f, 1)->eax, find(out, 0xb, 1)->eax);
    EXPECT_EQ(find(out, 0x1f, 0)->edx, want[i]);
  }
}

TEST(Cpuid, Leaf1FDieLevelWithThreeDiesOfThreeCores) {
  // 1 thread, 3 cores (2 bits), 3 dies (2 bits), 1 package: vCPU 7 is core 1
  // of die 2 -> APIC ID 1 | 2 << 2 = 9.
  CpuTopology t{1, 3, 3, 1};
  auto out = build(7, 9, t);
  auto smt = find(out, 0x1f, 0), core = find(out, 0x1f, 1), die = find(out, 0x1f, 2);
  ASSERT_TRUE(smt && core && die);
  EXPECT_EQ(smt->edx, 9u);
  EXPECT_EQ(bits(core->ecx, 8, 8), 2u);
  EXPECT_EQ(bits(core->eax, 0, 5), 2u);
  EXPECT_EQ(bits(core->ebx, 0, 16), 3u);
  EXPECT_EQ(bits(die->ecx, 8, 8), 5u);
  EXPECT_EQ(bits(die->eax, 0, 5), 4u);
  EXPECT_EQ(bits(die->ebx, 0, 16), 9u);
  EXPECT_EQ(bits(find(out, 0x1f, 3)->ecx, 8, 8), 0u);
  // Leaf 0xB has no die level: its core level spans the package.
  EXPECT_EQ(bits(find(out, 0xb, 1)->eax, 0, 5), 4u);
  EXPECT_EQ(bits(find(out, 0xb, 1)->ebx, 0, 16), 9u);
  EXPECT_EQ(bits(find(out, 0xb, 2)->ecx, 8, 8), 0u);
}

TEST(Cpuid, Leaf4CoreCountIsSetOnlyOnRealCaches) {
  auto out = build(0, 8, CpuTopology::flat(8));
  for (uint32_t sub = 0; sub < 4; ++sub)
    EXPECT_EQ(bits(find(out, 0x4, sub)->eax, 26, 6) + 1, 8u) << sub;
  EXPECT_EQ(find(out, 0x4, 4)->eax, 0u) << "terminator stays zero";
  EXPECT_EQ(bits(find(out, 0x4, 0)->eax, 0, 14), 0x0121u) << "cache type and level kept";
}

TEST(Cpuid, TopologyLeavesOnlyWithinTheMaxBasicLeaf) {
  auto tbl = supported(0xd);
  auto out = build(0, 2, CpuTopology::flat(2), {}, tbl);
  EXPECT_TRUE(find(out, 0xb, 0));
  EXPECT_FALSE(find(out, 0x1f, 0));
}

TEST(Cpuid, HypervisorLeavesSayKvm) {
  auto out = build(0, 1, CpuTopology::flat(1));
  auto sig = find(out, 0x40000000);
  ASSERT_TRUE(sig);
  char name[13] = {};
  std::memcpy(name, &sig->ebx, 4);
  std::memcpy(name + 4, &sig->ecx, 4);
  std::memcpy(name + 8, &sig->edx, 4);
  EXPECT_EQ(std::string(name, 12), std::string("KVMKVMKVM\0\0\0", 12));
  EXPECT_EQ(sig->eax, 0x40000001u);
  EXPECT_EQ(find(out, 0x40000001)->eax, 0x01007afbu) << "KVM features pass through";
}

TEST(Cpuid, HypervisorLeavesAreAddedWhenKvmOmitsThem) {
  std::vector<kvm_cpuid_entry2> tbl;
  for (const auto& e : supported())
    if (e.function < 0x40000000 || e.function > 0x40000001) tbl.push_back(e);
  auto out = build(0, 1, CpuTopology::flat(1), {}, tbl);
  ASSERT_TRUE(find(out, 0x40000000));
  EXPECT_EQ(find(out, 0x40000000)->ebx, 0x4b4d564bu);
  ASSERT_TRUE(find(out, 0x40000001));
  EXPECT_EQ(find(out, 0x40000001)->eax, 0u) << "no features KVM did not report";
}

TEST(Cpuid, AddressSizeLeafPassesThrough) {
  auto l = find(build(0, 2, CpuTopology::flat(2)), 0x80000008);
  EXPECT_EQ(l->eax, 0x3027u);
  EXPECT_EQ(l->ebx, 0x100d000u);
}

TEST(Cpuid, PmuIsHiddenUnlessEnabled) {
  auto off = build(0, 1, CpuTopology::flat(1));
  EXPECT_EQ(bits(find(off, 0xa)->eax, 0, 8), 0u);
  EXPECT_FALSE(find(off, 0x80000001)->ecx & (1u << 23));
  auto on = build(0, 1, CpuTopology::flat(1), {.enable_pmu = true});
  EXPECT_EQ(bits(find(on, 0xa)->eax, 0, 8), 5u);
  EXPECT_TRUE(find(on, 0x1)->ecx & (1u << 15));
}

TEST(Cpuid, PowerLeafKeepsOnlyArat) {
  auto l6 = find(build(0, 1, CpuTopology::flat(1)), 0x6);
  EXPECT_EQ(l6->eax, 1u << 2);
  EXPECT_EQ(l6->ebx | l6->ecx | l6->edx, 0u);
}

TEST(Cpuid, ApicIdsPackTopologyFields) {
  CpuTopology t{1, 3, 1, 2};  // 2-bit core field
  EXPECT_EQ(apic_id(t, 2), 2u);
  EXPECT_EQ(apic_id(t, 3), 4u);  // socket 1, core 0
  EXPECT_EQ(apic_id(t, 5), 6u);
  auto out = build(3, 6, t);
  EXPECT_EQ(bits(find(out, 0x1)->ebx, 24, 8), 4u);
  EXPECT_EQ(find(out, 0xb, 1)->eax, 2u);
}

TEST(Cpuid, RejectsImpossibleTopologies) {
  auto tbl = supported();
  EXPECT_FALSE(build_cpuid(tbl, 0, 1, CpuTopology{0, 1, 1, 1}));
  EXPECT_FALSE(build_cpuid(tbl, 4, 4, CpuTopology::flat(4)));     // index out of range
  EXPECT_FALSE(build_cpuid(tbl, 0, 5, CpuTopology{2, 2, 1, 1}));  // room for 4 only
  EXPECT_FALSE(build_cpuid(tbl, 0, 300, CpuTopology::flat(300)));
  EXPECT_FALSE(build_cpuid(tbl, 0, 1, CpuTopology{1, 0x80000000, 0x80000000, 4}));
  EXPECT_FALSE(build_cpuid(tbl, 0, 0, CpuTopology::flat(0)));
}

}  // namespace
}  // namespace skiff::x86

#include "arch/x86/msr.h"

#include <gtest/gtest.h>

#include <map>

namespace skiff::x86 {
namespace {

// Everything KVM_GET_MSR_INDEX_LIST reports on a typical x86-64 host that
// matters here, plus some MSRs skiff does not set.
const std::vector<uint32_t> kKvmList{0x10,       0x174,      0x175,      0x176,
                                     0x1a0,      0xc0000081, 0xc0000082, 0xc0000083,
                                     0xc0000084, 0xc0000102, 0x277,      0x48};

std::map<uint32_t, uint64_t> as_map(const std::vector<kvm_msr_entry>& v) {
  std::map<uint32_t, uint64_t> m;
  for (const auto& e : v) {
    EXPECT_FALSE(m.contains(e.index)) << std::hex << e.index << " twice";
    EXPECT_EQ(e.reserved, 0u);
    m[e.index] = e.data;
  }
  return m;
}

TEST(BootMsrs, SetsTheArchitecturalBootValues) {
  auto m = as_map(boot_msrs({kKvmList, true}));
  EXPECT_EQ(m.size(), 11u);
  // SDM Vol. 4: IA32_MISC_ENABLE bit 0 is fast strings; IA32_MTRR_DEF_TYPE
  // 0x806 = E (bit 11) | type 6 (write-back).
  EXPECT_EQ(m.at(0x1a0), 1u);
  EXPECT_EQ(m.at(0x2ff), 0x806u);
  for (uint32_t zero : {0x10u, 0x174u, 0x175u, 0x176u, 0xc0000081u, 0xc0000082u, 0xc0000083u,
                        0xc0000084u, 0xc0000102u})
    EXPECT_EQ(m.at(zero), 0u) << std::hex << zero;
}

TEST(BootMsrs, LeavesOutMsrsKvmDoesNotList) {
  std::vector<uint32_t> no_cstar{0x10, 0x1a0, 0xc0000082};
  auto m = as_map(boot_msrs({no_cstar, false}));
  EXPECT_EQ(m.size(), 3u);
  EXPECT_FALSE(m.contains(0xc0000083));
  EXPECT_TRUE(m.contains(0xc0000082));
}

TEST(BootMsrs, SetsMtrrDefTypeOnlyWhenTheGuestHasMtrrs) {
  EXPECT_TRUE(as_map(boot_msrs({{}, true})).contains(0x2ff));
  EXPECT_TRUE(boot_msrs({{}, false}).empty());
  // Listing it is not enough: without CPUID.MTRR the guest has no MTRRs.
  std::vector<uint32_t> listed{0x2ff};
  EXPECT_TRUE(boot_msrs({listed, false}).empty());
}

}  // namespace
}  // namespace skiff::x86

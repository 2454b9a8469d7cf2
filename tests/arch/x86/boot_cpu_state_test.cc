#include "arch/x86/boot_cpu_state.h"

#include <gtest/gtest.h>

#include "arch/x86/test_images.h"

namespace skiff::x86 {
namespace {

using testing::TestRam;

constexpr uint64_t kMiB = 1 << 20;

struct Cpu {
  kvm_regs regs{};
  kvm_sregs sregs{};
};

Cpu setup(const TestRam& ram, EntryMode mode) {
  EntryState e;
  e.mode = mode;
  e.rip = 0x1000200;
  e.rsp = 0x8ff0;
  e.rax = 0x2BADB002;
  e.rbx = 0x6000;
  e.rsi = 0x7000;
  Cpu c;
  c.sregs.apic_base = 0xfee00900;  // as KVM_GET_SREGS would return it
  auto r = setup_boot_cpu(ram.mem(), e, &c.regs, &c.sregs);
  EXPECT_TRUE(r) << r.error().message;
  return c;
}

// Walks the guest's 4-level page tables like the MMU (SDM Vol. 3A §4.5).
std::optional<uint64_t> translate(const TestRam& ram, uint64_t cr3, uint64_t va) {
  uint64_t pml4e = ram.get<uint64_t>((cr3 & ~0xfffull) + ((va >> 39) & 511) * 8);
  if (!(pml4e & 1)) return std::nullopt;
  uint64_t pdpte = ram.get<uint64_t>((pml4e & 0xffffffffff000ull) + ((va >> 30) & 511) * 8);
  if (!(pdpte & 1)) return std::nullopt;
  if (pdpte & 0x80) return (pdpte & 0xfffffc0000000ull) | (va & 0x3fffffff);
  uint64_t pde = ram.get<uint64_t>((pdpte & 0xffffffffff000ull) + ((va >> 21) & 511) * 8);
  if (!(pde & 1)) return std::nullopt;
  if (!(pde & 0x80)) return std::nullopt;  // the boot tables only use 2 MiB pages
  return (pde & 0xfffffffe00000ull) | (va & 0x1fffff);
}

TEST(BootCpuState, LongModeHasPagingPaeEferAnd64BitCodeSegment) {
  TestRam ram(16 * kMiB);
  auto c = setup(ram, EntryMode::kLong64);
  EXPECT_EQ(c.sregs.cr0 & 0x80000001, 0x80000001u) << "PE and PG";
  EXPECT_TRUE(c.sregs.cr0 & 0x20) << "NE";
  EXPECT_TRUE(c.sregs.cr4 & 0x20) << "PAE";
  EXPECT_EQ(c.sregs.efer & 0x500, 0x500u) << "LME and LMA";
  EXPECT_EQ(c.sregs.cr3, 0x9000u);
  EXPECT_EQ(c.sregs.cs.selector, 0x10);
  EXPECT_EQ(c.sregs.cs.l, 1);
  EXPECT_EQ(c.sregs.cs.db, 0);
  EXPECT_EQ(c.sregs.cs.present, 1);
  EXPECT_EQ(c.sregs.cs.type & 0x8, 0x8) << "code";
  for (const kvm_segment* s : {&c.sregs.ds, &c.sregs.es, &c.sregs.ss, &c.sregs.fs, &c.sregs.gs}) {
    EXPECT_EQ(s->selector, 0x18);
    EXPECT_EQ(s->base, 0u);
    EXPECT_EQ(s->limit, 0xffffffffu);
    EXPECT_EQ(s->type & 0xa, 0x2) << "writable data";
  }
  EXPECT_EQ(c.sregs.gdt.base, 0x500u);
  EXPECT_EQ(c.sregs.gdt.limit, 31);
  EXPECT_EQ(c.sregs.idt.base, 0x520u);
  EXPECT_EQ(c.sregs.tr.type, 11) << "busy TSS";
  EXPECT_EQ(c.sregs.apic_base, 0xfee00900u) << "fields KVM owns are kept";
}

TEST(BootCpuState, RegistersComeFromTheEntryState) {
  TestRam ram(16 * kMiB);
  auto c = setup(ram, EntryMode::kLong64);
  EXPECT_EQ(c.regs.rip, 0x1000200u);
  EXPECT_EQ(c.regs.rsp, 0x8ff0u);
  EXPECT_EQ(c.regs.rsi, 0x7000u);
  EXPECT_EQ(c.regs.rax, 0x2BADB002u);
  EXPECT_EQ(c.regs.rbx, 0x6000u);
  EXPECT_EQ(c.regs.rflags, 0x2u);
  EXPECT_EQ(c.regs.rdi, 0u);
}

TEST(BootCpuState, GdtHoldsFlatBootCsAndDsAtTheSelectorsLinuxExpects) {
  TestRam ram(16 * kMiB);
  setup(ram, EntryMode::kLong64);
  EXPECT_EQ(ram.get<uint64_t>(0x500), 0u);
  // Linux's own boot GDT values: GDT_ENTRY(0xa09b, 0, 0xfffff) and
  // GDT_ENTRY(0xc093, 0, 0xfffff).
  EXPECT_EQ(ram.get<uint64_t>(0x500 + 0x10), 0x00af9b000000ffffull);
  EXPECT_EQ(ram.get<uint64_t>(0x500 + 0x18), 0x00cf93000000ffffull);
  // The TSS descriptor: base 0, limit 0x67, type 0xb, present.
  EXPECT_EQ(ram.get<uint64_t>(0x500 + 0x08), 0x00008b0000000067ull);
}

TEST(BootCpuState, PageTablesIdentityMapTheFirstFourGiB) {
  TestRam ram(16 * kMiB);
  auto c = setup(ram, EntryMode::kLong64);
  for (uint64_t va : {0x0ull, 0x7000ull, 0x1234567ull, 0xbfffffffull, 0xe0000000ull, 0xfee00000ull,
                      0xffffffffull}) {
    auto pa = translate(ram, c.sregs.cr3, va);
    ASSERT_TRUE(pa) << std::hex << va;
    EXPECT_EQ(*pa, va) << std::hex << va;
  }
  EXPECT_FALSE(translate(ram, c.sregs.cr3, 0x100000000ull)) << "nothing above 4 GiB";
  EXPECT_FALSE(translate(ram, c.sregs.cr3, 0x8000000000ull)) << "PML4[1] empty";
}

TEST(BootCpuState, ProtectedModeIsFlat32BitWithPagingOff) {
  TestRam ram(16 * kMiB);
  auto c = setup(ram, EntryMode::kProtected32);
  EXPECT_EQ(c.sregs.cr0 & 1, 1u);
  EXPECT_EQ(c.sregs.cr0 & 0x80000000, 0u);
  EXPECT_EQ(c.sregs.efer, 0u);
  EXPECT_EQ(c.sregs.cr4, 0u);
  EXPECT_EQ(c.sregs.cs.db, 1);
  EXPECT_EQ(c.sregs.cs.l, 0);
  EXPECT_EQ(c.sregs.cs.base, 0u);
  EXPECT_EQ(c.sregs.cs.limit, 0xffffffffu);
  EXPECT_EQ(c.sregs.ss.db, 1);
  EXPECT_EQ(c.sregs.tr.limit, 0x67u);
  EXPECT_EQ(ram.get<uint64_t>(0x500 + 0x10), 0x00cf9b000000ffffull);
  EXPECT_EQ(c.regs.rflags, 0x2u);
}

TEST(BootCpuState, FailsCleanlyWhenRamCannotHoldThePageTables) {
  // 0xa000 bytes: the GDT and PML4 fit, the PDs at 0xb000 do not.
  TestRam ram(0xa000);
  EntryState e;
  e.mode = EntryMode::kLong64;
  kvm_regs regs{};
  kvm_sregs sregs{};
  auto r = setup_boot_cpu(ram.mem(), e, &regs, &sregs);
  EXPECT_FALSE(r);
}

}  // namespace
}  // namespace skiff::x86

#include "arch/x86/boot_cpu_state.h"

#include <array>

#include "arch/x86/layout.h"

namespace skiff::x86 {
namespace {

constexpr uint8_t kTypeCodeExecReadAccessed = 0xb;
constexpr uint8_t kTypeDataReadWriteAccessed = 0x3;
constexpr uint8_t kTypeTss32Busy = 0xb;  // system segment; also the 64-bit busy TSS

// Page-table entry bits (SDM Vol. 3A §4.5).
constexpr uint64_t kPtePresent = 1u << 0;
constexpr uint64_t kPteWritable = 1u << 1;
constexpr uint64_t kPtePageSize = 1u << 7;  // 2 MiB page in a PD entry

kvm_segment flat_segment(uint16_t selector, uint8_t type, bool long_mode_code) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;  // byte limit; with g = 1 the descriptor holds 0xfffff
  s.selector = selector;
  s.type = type;
  s.present = 1;
  s.dpl = 0;
  s.s = 1;  // code/data, not system
  s.g = 1;
  // A 64-bit code segment has L = 1 and must have D = 0 (SDM §5.2.1).
  s.l = long_mode_code ? 1 : 0;
  s.db = long_mode_code ? 0 : 1;
  return s;
}

kvm_segment boot_tss() {
  kvm_segment s{};
  s.limit = 0x67;  // minimal 32-bit TSS (104 bytes)
  s.selector = kBootTssSelector;
  s.type = kTypeTss32Busy;
  s.present = 1;
  return s;
}

// Identity map of [0, 4 GiB): one PML4 entry -> one PDPT with 4 entries ->
// 4 page directories of 512 2-MiB pages each.
Result<> write_identity_page_tables(const GuestMemory& mem) {
  constexpr uint64_t kFlags = kPtePresent | kPteWritable;
  SKIFF_TRY_VOID(mem.write_obj<uint64_t>(kPml4Addr, kPdptAddr | kFlags));
  for (uint64_t i = 1; i < 512; ++i) SKIFF_TRY_VOID(mem.write_obj<uint64_t>(kPml4Addr + i * 8, 0));
  for (uint64_t i = 0; i < 512; ++i) {
    uint64_t v = i < 4 ? (kPdAddr + i * 0x1000) | kFlags : 0;
    SKIFF_TRY_VOID(mem.write_obj<uint64_t>(kPdptAddr + i * 8, v));
  }
  std::array<uint64_t, 4 * 512> pd;
  for (uint64_t i = 0; i < pd.size(); ++i) pd[i] = (i * 2 * kMiB) | kFlags | kPtePageSize;
  return mem.write_obj(kPdAddr, pd);
}

}  // namespace

uint64_t gdt_entry(const kvm_segment& s) {
  uint64_t limit = s.g ? s.limit >> 12 : s.limit;
  uint64_t e = 0;
  e |= limit & 0xffff;
  e |= (s.base & 0xffffff) << 16;
  e |= uint64_t{s.type & 0xfu} << 40;
  e |= uint64_t{s.s & 1u} << 44;
  e |= uint64_t{s.dpl & 3u} << 45;
  e |= uint64_t{s.present & 1u} << 47;
  e |= ((limit >> 16) & 0xf) << 48;
  e |= uint64_t{s.avl & 1u} << 52;
  e |= uint64_t{s.l & 1u} << 53;
  e |= uint64_t{s.db & 1u} << 54;
  e |= uint64_t{s.g & 1u} << 55;
  e |= ((s.base >> 24) & 0xff) << 56;
  return e;
}

Result<> setup_boot_cpu(const GuestMemory& mem, const EntryState& entry, kvm_regs* regs,
                        kvm_sregs* sregs) {
  bool long_mode = entry.mode == EntryMode::kLong64;
  kvm_segment code = flat_segment(kBootCodeSelector, kTypeCodeExecReadAccessed, long_mode);
  kvm_segment data = flat_segment(kBootDataSelector, kTypeDataReadWriteAccessed, false);
  kvm_segment tss = boot_tss();

  std::array<uint64_t, kBootGdtEntries> gdt{0, gdt_entry(tss), gdt_entry(code), gdt_entry(data)};
  SKIFF_TRY_VOID(mem.write_obj(kGdtAddr, gdt));

  sregs->cs = code;
  sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
  sregs->tr = tss;
  sregs->ldt = kvm_segment{};
  sregs->ldt.type = 0x2;  // LDT, marked unusable: none is loaded
  sregs->ldt.unusable = 1;
  sregs->gdt = kvm_dtable{};
  sregs->gdt.base = kGdtAddr;
  sregs->gdt.limit = kBootGdtEntries * 8 - 1;
  sregs->idt = kvm_dtable{};
  sregs->cr2 = 0;

  if (long_mode) {
    // An IDT with no usable vector: an early exception triple-faults into a
    // clean shutdown exit instead of running through garbage.
    SKIFF_TRY_VOID(mem.write_obj<uint64_t>(kIdtAddr, 0));
    sregs->idt.base = kIdtAddr;
    sregs->idt.limit = 7;
    SKIFF_TRY_VOID(write_identity_page_tables(mem));
    sregs->cr3 = kPml4Addr;
    sregs->cr4 = kCr4Pae;
    sregs->cr0 = kCr0Pe | kCr0Et | kCr0Ne | kCr0Pg;
    sregs->efer = kEferLme | kEferLma;
  } else {
    // pvh.pandoc and Multiboot §3.2: PE set, paging and everything else
    // writable clear (ET is fixed to 1 on every CPU KVM runs on).
    sregs->cr3 = 0;
    sregs->cr4 = 0;
    sregs->cr0 = kCr0Pe | kCr0Et;
    sregs->efer = 0;
  }

  *regs = kvm_regs{};
  regs->rip = entry.rip;
  regs->rsp = entry.rsp;
  regs->rax = entry.rax;
  regs->rbx = entry.rbx;
  regs->rsi = entry.rsi;
  regs->rflags = 0x2;  // bit 1 is reserved as 1; IF clear
  return {};
}

}  // namespace skiff::x86

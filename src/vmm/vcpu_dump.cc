#include "vmm/vcpu_dump.h"

#include <array>

#include <fmt/format.h>

namespace skiff {

namespace {

std::string segment(const char* name, const kvm_segment& s) {
  return fmt::format("{}={:04x} base={:016x} limit={:08x} type={:x} dpl={} db={} l={}\n", name,
                     s.selector, s.base, s.limit, s.type, s.dpl, s.db, s.l);
}

}  // namespace

std::string dump_vcpu(const kvm::Vcpu& vcpu, const GuestMemory& memory) {
  std::string out = fmt::format("vCPU {} state:\n", vcpu.id());
  auto regs = vcpu.get_regs();
  auto sregs = vcpu.get_sregs();
  if (!regs || !sregs) return out + "  (registers unavailable)\n";
  const kvm_regs& r = *regs;
  const kvm_sregs& s = *sregs;
  out += fmt::format(
      "RIP={:016x} RSP={:016x} RFLAGS={:08x}\n"
      "RAX={:016x} RBX={:016x} RCX={:016x} RDX={:016x}\n"
      "RSI={:016x} RDI={:016x} RBP={:016x}\n"
      "R8 ={:016x} R9 ={:016x} R10={:016x} R11={:016x}\n"
      "R12={:016x} R13={:016x} R14={:016x} R15={:016x}\n",
      r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9, r.r10,
      r.r11, r.r12, r.r13, r.r14, r.r15);
  out += segment("CS", s.cs) + segment("SS", s.ss) + segment("DS", s.ds) + segment("TR", s.tr);
  out += fmt::format("CR0={:016x} CR2={:016x} CR3={:016x} CR4={:016x} EFER={:x}\n", s.cr0, s.cr2,
                     s.cr3, s.cr4, s.efer);
  out += fmt::format("GDT={:016x}/{:x} IDT={:016x}/{:x}\n", s.gdt.base, s.gdt.limit, s.idt.base,
                     s.idt.limit);

  // Bytes at CS:RIP, through the guest's own page tables when paging is on.
  uint64_t linear = s.cs.base + r.rip;
  auto phys = vcpu.translate(linear);
  if (!phys) return out + fmt::format("code at RIP: {}\n", phys.error().what());
  std::array<uint8_t, 16> code{};
  size_t n = code.size();
  while (n > 0 && !memory.contains(*phys, n)) --n;
  if (n == 0 || !memory.read(*phys, std::span(code.data(), n)))
    return out + fmt::format("code at RIP (phys {:#x}): not in guest RAM\n", *phys);
  out += fmt::format("code at RIP (phys {:#x}):", *phys);
  for (size_t i = 0; i < n; ++i) out += fmt::format(" {:02x}", code[i]);
  return out + "\n";
}

}  // namespace skiff

/* emulation_failure: executes at CPL 0 an instruction that KVM's x86
 * instruction emulator refuses, `lock cmpxchg16b` (arch/x86/kvm/emulate.c
 * handles cmpxchg8b but returns "unhandleable" for the 16-byte form).
 *
 * On a host where KVM emulates every CPL-0 instruction (nested, kvm_pvm;
 * DESIGN.md) the VMM gets KVM_EXIT_INTERNAL_ERROR / KVM_INTERNAL_ERROR_EMULATION
 * and must report it (skiff: exit status 4, the instruction bytes and a
 * register dump). With hardware virtualisation the instruction simply runs.
 *
 * Prints `ABOUT TO EMULATE lock cmpxchg16b (%rdi) bytes=<hex bytes>` (read
 * from its own code, so a host test can look for them in the VMM's log);
 * if the instruction completes: `EXECUTED ok=<1|0>` (ok: it stored the new
 * value) and exit 0x10, or 0x20 if the store is wrong. */
#include "runtime.h"

const char guest_name[] = "emulation_failure";

static volatile uint64_t target[2] __attribute__((aligned(16)));
extern const uint8_t emul_insn[], emul_insn_end[];

/* Compares RDX:RAX (0:0, the initial memory value) with the 16 bytes at
 * RDI and, equal, stores RCX:RBX. RDI is fixed so the encoding is too:
 * F0 (lock) 48 (REX.W) 0F C7 /1 with ModRM 0x0f ([rdi]). */
static uint64_t cmpxchg16b_at_cpl0(uint64_t unused) {
  (void)unused;
  uint64_t lo = 0, hi = 0;
  __asm__ volatile(
      ".globl emul_insn, emul_insn_end\n"
      "emul_insn: lock cmpxchg16b (%%rdi)\n"
      "emul_insn_end:"
      : "+a"(lo), "+d"(hi)
      : "D"(target), "b"(0x1111111111111111ull), "c"(0x2222222222222222ull)
      : "memory", "cc");
  return target[0] == 0x1111111111111111ull && target[1] == 0x2222222222222222ull;
}

int guest_main(void) {
  printf("ABOUT TO EMULATE lock cmpxchg16b (%%rdi) bytes=");
  for (const uint8_t* p = emul_insn; p < emul_insn_end; p++)
    printf("%s%02x", p == emul_insn ? "" : " ", *p);
  printf("\n");
  uint64_t ok = kernel_call(cmpxchg16b_at_cpl0, 0);
  printf("EXECUTED ok=%u\n", (unsigned)ok);
  return ok ? 0x10 : 0x20;
}

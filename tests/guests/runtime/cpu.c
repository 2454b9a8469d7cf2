/* runtime_start(): the C side of boot. TSS (ring-0 stack for exceptions
 * from ring 3, I/O permission bitmap), IDT (exceptions, two of which are
 * the ring-3 -> ring-0 gates), then guest_main() at CPL 3. The CPL-0 part is kept to a few hundred
 * instructions. */
#include "runtime.h"

extern uint64_t gdt[GDT_BYTES / 8];
extern char intr_stack_top[];
extern const uint64_t exc_stub_table[32];
extern const char irq_stubs[];
extern const char user_return_ud2[], kernel_call_ud2[];
_Noreturn void user_return_resume(uint64_t result);
_Noreturn void runtime_start(uint32_t proto, uint32_t info_paddr);
void exception_handler(struct exception_frame* f);

/* Intel SDM vol. 3 §7.7: 64-bit TSS. No I/O bitmap (iomap_base past the
 * limit): ring 3 gets port I/O from IOPL = 3 instead. */
struct tss64 {
  uint32_t reserved0;
  uint64_t rsp[3];
  uint64_t reserved1;
  uint64_t ist[7];
  uint64_t reserved2;
  uint16_t reserved3;
  uint16_t iomap_base;
  /* One bit per port, 0 = allowed; plus the all-ones byte the CPU may read
   * past the end (SDM vol. 1 §19.5.2). */
  uint8_t iomap[65536 / 8 + 1];
} __attribute__((packed));

struct idt_gate {
  uint16_t offset_lo, selector;
  uint8_t ist, type_attr;
  uint16_t offset_mid;
  uint32_t offset_hi, reserved;
} __attribute__((packed));

static struct tss64 tss;
static struct idt_gate idt[256] __attribute__((aligned(16)));

static void set_gate(unsigned vec, uint64_t handler, unsigned dpl) {
  idt[vec] = (struct idt_gate){
      .offset_lo = (uint16_t)handler,
      .selector = SEL_KCODE64,
      .type_attr = (uint8_t)(0x8e | (dpl << 5)), /* present, 64-bit interrupt gate */
      .offset_mid = (uint16_t)(handler >> 16),
      .offset_hi = (uint32_t)(handler >> 32),
  };
}

static void setup_tss_and_idt(void) {
  tss.rsp[0] = (uint64_t)(uintptr_t)intr_stack_top;
  tss.iomap_base = offsetof(struct tss64, iomap);
  tss.iomap[sizeof tss.iomap - 1] = 0xff;
  uint64_t base = (uint64_t)(uintptr_t)&tss;
  uint64_t limit = sizeof tss - 1;
  /* 16-byte system descriptor, type 9 (available 64-bit TSS), present. */
  gdt[SEL_TSS / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
                     ((limit >> 16 & 0xf) << 48) | ((base >> 24 & 0xff) << 56);
  gdt[SEL_TSS / 8 + 1] = base >> 32;
  __asm__ volatile("ltr %w0" : : "r"(SEL_TSS));

  for (unsigned v = 0; v < 32; v++) set_gate(v, exc_stub_table[v], 0);
  struct {
    uint16_t limit;
    uint64_t base;
  } __attribute__((packed)) idtr = {sizeof idt - 1, (uint64_t)(uintptr_t)idt};
  __asm__ volatile("lidt %0" : : "m"(idtr));
}

static void (*irq_handlers[256])(struct exception_frame*);

void set_interrupt_handler(uint8_t vector, void (*fn)(struct exception_frame*)) {
  if (vector < 32) guest_fail("vector %u is an exception, not an interrupt", vector);
  irq_handlers[vector] = fn;
  /* The IDT is ordinary (user-writable) guest memory: no CPL 0 needed. */
  set_gate(vector, (uint64_t)(uintptr_t)irq_stubs + 16u * (vector - 32u), 0);
}

static uint64_t sti_hlt(uint64_t unused) {
  (void)unused;
  /* STI's one-instruction shadow covers HLT: an interrupt pending now
   * wakes the HLT instead of being taken before it and lost to the wait. */
  __asm__ volatile("sti; hlt; cli" ::: "memory");
  return 0;
}

void wait_for_interrupt(void) {
  kernel_call(sti_hlt, 0);
}

static uint32_t boot_proto, boot_info_paddr;

/* Ring 3 from here on. */
static uint64_t user_main(uint64_t unused) {
  (void)unused;
  printf("GUEST %s START\n", guest_name);
  parse_boot_info((int)boot_proto, boot_info_paddr);
  outb(POST_PORT, BOOT_MARKER_MAIN); /* from ring 3: costs no emulated instruction */
  return (uint64_t)guest_main();
}

_Noreturn void runtime_start(uint32_t proto, uint32_t info_paddr) {
  boot_proto = proto;
  boot_info_paddr = info_paddr;
  serial_init();
  setup_tss_and_idt();
  uint64_t v = run_user(user_main, 0);
  guest_exit((uint8_t)v);
}

void exception_handler(struct exception_frame* f) {
  if (f->vector >= 32 && f->vector < 256) {
    void (*fn)(struct exception_frame*) = irq_handlers[f->vector];
    if (fn) {
      fn(f);
      return;
    }
    printf("UNEXPECTED_INTERRUPT vector=%llu\n", (unsigned long long)f->vector);
    guest_exit(EXIT_EXCEPTION);
  }
  if (f->vector == 6 && (f->cs & 3) == 3) {
    if (f->rip == (uint64_t)(uintptr_t)user_return_ud2) user_return_resume(f->rax);
    if (f->rip == (uint64_t)(uintptr_t)kernel_call_ud2) {
      uint64_t (*fn)(uint64_t) = (uint64_t(*)(uint64_t))(uintptr_t)f->rdi;
      f->rax = fn(f->rsi);
      f->rip += 2;
      return;
    }
  }
  uint64_t cr2;
  __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
  printf(
      "EXCEPTION vector=%llu error=0x%llx rip=0x%llx cs=0x%llx rflags=0x%llx rsp=0x%llx "
      "cr2=0x%llx\n",
      (unsigned long long)f->vector, (unsigned long long)f->error, (unsigned long long)f->rip,
      (unsigned long long)f->cs, (unsigned long long)f->rflags, (unsigned long long)f->rsp,
      (unsigned long long)cr2);
  guest_exit(EXIT_EXCEPTION);
}

static uint32_t cpl0_regs[4];
static uint64_t cpuid_at_cpl0(uint64_t leaf_subleaf) {
  cpuid((uint32_t)leaf_subleaf, (uint32_t)(leaf_subleaf >> 32), cpl0_regs);
  return 0;
}

void cpuid_cpl0(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
  kernel_call(cpuid_at_cpl0, (uint64_t)subleaf << 32 | leaf);
  memcpy(r, cpl0_regs, sizeof cpl0_regs);
}

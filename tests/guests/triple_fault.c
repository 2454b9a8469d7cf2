/* triple_fault: loads an IDT with limit 0 and executes ud2 at CPL 0:
 * #UD cannot be delivered -> #DF cannot be delivered -> triple fault, which
 * a VMM sees as a shutdown (KVM_EXIT_SHUTDOWN). Prints ABOUT TO FAULT
 * first; anything after that means the fault did not happen, and the guest
 * then prints NO FAULT and exits 0x20. */
#include "runtime.h"

const char guest_name[] = "triple_fault";

static uint64_t fault(uint64_t unused) {
  (void)unused;
  struct {
    uint16_t limit;
    uint64_t base;
  } __attribute__((packed)) empty = {0, 0};
  __asm__ volatile("lidt %0; ud2" : : "m"(empty));
  return 0;
}

int guest_main(void) {
  puts_line("ABOUT TO FAULT");
  kernel_call(fault, 0);
  puts_line("NO FAULT");
  return 0x20;
}

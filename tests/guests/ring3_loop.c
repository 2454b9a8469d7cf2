/* ring3_loop: a counting loop at CPL 3 (the runtime runs guest_main there),
 * iters=N from the command line (default 1e8). It sums the counter and
 * checks the sum against n(n-1)/2, so a VMM that corrupts registers or
 * loses state across exits shows up as ok=0.
 *   CPL=<current privilege level>
 *   LOOP iters=<n> ok=<1|0>
 * Exit 0x10 if ok (from ring 3, through the port), else 0x20. */
#include "runtime.h"

const char guest_name[] = "ring3_loop";

int guest_main(void) {
  uint64_t n = cmdline_u64("iters", 100000000);
  printf("CPL=%u\n", current_cpl());
  uint64_t sum = 0;
  for (uint64_t i = 0; i < n; i++) {
    sum += i;
    /* Keep the loop a loop: the compiler may not fold it into a formula. */
    __asm__ volatile("" : "+r"(sum));
  }
  /* n(n-1)/2 mod 2^64 without overflowing the intermediate product. */
  uint64_t expect = n % 2 == 0 ? (n / 2) * (n - 1) : n * ((n - 1) / 2);
  int ok = sum == expect && current_cpl() == 3;
  printf("LOOP iters=%llu ok=%d\n", (unsigned long long)n, ok);
  guest_exit(ok ? 0x10 : 0x20); /* the out to port 0xf4 is made at CPL 3 */
}

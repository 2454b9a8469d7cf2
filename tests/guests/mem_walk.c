/* mem_walk: a TLB-defeating walk over a large buffer at CPL 3, for the
 * guest RAM benchmark (bench/memory) and the huge page test under skiff.
 *   mib=N     buffer size in MiB (default 256), at guest physical 64 MiB;
 *             must be RAM per the boot memory map and inside the 1 GiB map
 *   steps=N   pointer-chasing steps (default 10^7)
 * Each 4 KiB page of the buffer holds one link; the links form a single
 * random cycle through all pages (Sattolo's shuffle), so consecutive loads
 * hit different pages in no predictable order: with 4 KiB host pages nearly
 * every load needs a page walk in the host's (EPT) tables, with 2 MiB host
 * pages the 2 MiB translations of a 256 MiB buffer fit the STLB. The link
 * sits at a different cache line in each page, spreading cache sets.
 *   WALK mib=<n> pages=<n> steps=<n> cycle=<1|0> tsc_per_step=<n>
 * cycle=1: walking `pages` steps from page 0 came back to page 0 having
 * visited each page once (the buffer kept what was written).
 * Exit 0x10 if cycle=1, else 0x20. */
#include "runtime.h"

const char guest_name[] = "mem_walk";

#define BUF_BASE (64ull << 20)
#define PAGE 4096ull

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_random(void) { /* xorshift64 */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Where page i keeps its link: line 1..63, never line 0 (the shuffle slot). */
static uint64_t* link_of(uint8_t* buf, uint64_t i) {
  return (uint64_t*)(buf + i * PAGE + ((i * 7) % 63 + 1) * 64);
}

static bool is_ram(uint64_t start, uint64_t len) {
  for (uint32_t i = 0; i < boot_info.n_mem; i++) {
    const struct mem_range* m = &boot_info.mem[i];
    if (m->type == 1 && start >= m->start && start - m->start <= m->len &&
        len <= m->len - (start - m->start))
      return true;
  }
  return false;
}

int guest_main(void) {
  uint64_t mib = cmdline_u64("mib", 256);
  uint64_t steps = cmdline_u64("steps", 10000000);
  uint64_t size = mib << 20, pages = size / PAGE;
  if (pages < 2 || !phys_range_ok(BUF_BASE, size) || !is_ram(BUF_BASE, size))
    guest_fail("mem_walk: mib=%llu at 64 MiB is not RAM inside the 1 GiB map",
               (unsigned long long)mib);
  uint8_t* buf = phys(BUF_BASE);

  /* Sattolo: slot[k] (line 0 of page k) is a permutation forming one cycle. */
  for (uint64_t k = 0; k < pages; k++) *(uint64_t*)(buf + k * PAGE) = k;
  for (uint64_t k = pages - 1; k > 0; k--) {
    uint64_t j = next_random() % k;
    uint64_t* a = (uint64_t*)(buf + k * PAGE);
    uint64_t* b = (uint64_t*)(buf + j * PAGE);
    uint64_t t = *a;
    *a = *b;
    *b = t;
  }
  /* Page slot[k] links to page slot[k+1], the last back to the first. */
  for (uint64_t k = 0; k < pages; k++) {
    uint64_t from = *(uint64_t*)(buf + k * PAGE);
    uint64_t to = *(uint64_t*)(buf + ((k + 1) % pages) * PAGE);
    *link_of(buf, from) = to;
  }

  /* The cycle visits every page once and returns. */
  uint64_t p = 0, n = 0;
  do {
    p = *link_of(buf, p);
    n++;
  } while (p != 0 && n <= pages);
  int cycle = p == 0 && n == pages;

  uint64_t t0 = rdtsc();
  p = 0;
  for (uint64_t i = 0; i < steps; i++) p = *link_of(buf, p);
  uint64_t t1 = rdtsc();
  __asm__ volatile("" : : "r"(p));
  printf("WALK mib=%llu pages=%llu steps=%llu cycle=%d tsc_per_step=%llu\n",
         (unsigned long long)mib, (unsigned long long)pages, (unsigned long long)steps, cycle,
         (unsigned long long)(steps ? (t1 - t0) / steps : 0));
  guest_exit(cycle ? 0x10 : 0x20);
}

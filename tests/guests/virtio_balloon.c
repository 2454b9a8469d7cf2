/* virtio_balloon: a minimal virtio 1.x traditional balloon driver (virtio
 * 1.2 §5.5), run under skiff (--balloon) and QEMU (virtio-balloon-pci),
 * driven from outside by virtio_balloon_test.py, which sets the target
 * (QMP `balloon` / skiff's vm.resize desired_balloon) and measures the
 * VMM's RSS between the phases.
 *
 * Finds the modern balloon function (1af4:1045) on bus 0, places its virtio
 * BAR in the 32-bit PCI window, negotiates VERSION_1 and STATS_VQ (when
 * offered) and polls at CPL 3, no interrupts:
 *   1. touches mib=N MiB (default 64) of RAM at 64 MiB, one pattern qword
 *      per 4 KiB page, and posts its statistics buffer (§5.5.6.3);
 *   2. waits for config num_pages != 0, gives that many of the touched
 *      pages to the device on inflateq (arrays of 256 le32 PFNs, as Linux
 *      does) and writes config `actual`;
 *   3. waits for num_pages == 0, gives them back on deflateq, writes
 *      actual = 0, counts the pages that now read zero (the host really
 *      dropped them) and touches them again;
 *   4. waits for num_pages == 1 (the harness's "done") and exits.
 * Whenever the device returns the stats buffer (a refresh request), the
 * driver refills it and posts it again: MEMTOT = RAM from the boot memory
 * map, MEMFREE = RAM minus the touched arena, AVAIL = the number of
 * refreshes so far.
 * The PCI helpers repeat virtio_blk.c's on purpose: each guest is one file.
 *
 * Serial output (KEY=VALUE, checked by virtio_balloon_test.py):
 *   BALLOON_PCI=dd         slot of the balloon function
 *   BALLOON_FEATURES=hex   device feature bits 0-31
 *   TOUCHED=pages          phase 1 done
 *   TARGET=pages           num_pages seen in phase 2
 *   INFLATED=pages         phase 2 done (actual written)
 *   DEFLATED=pages         phase 3: deflate done
 *   ZEROED=pages           phase 3: ballooned pages that read zero afterwards
 *   RETOUCHED=pages        phase 3 done
 *   STATS_REFRESHES=n      stats buffers the device handed back
 * Exit 0x10 on success; guest_fail (0x7e) on any protocol problem. */
#include "runtime.h"

const char guest_name[] = "virtio_balloon";

#define PCI_WINDOW 0xc0000000ull
#define QSIZE 8
#define ARENA 0x4000000ull /* 64 MiB */
#define PFNS_PER_REQ 256

static inline uint32_t inl(uint16_t port) {
  uint32_t v;
  __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline void barrier(void) {
  __asm__ volatile("mfence" ::: "memory");
}

static uint32_t cfg_read(uint32_t dev, uint32_t reg) {
  outl(0xcf8, 0x80000000u | dev << 11 | (reg & 0xfc));
  return inl(0xcfc);
}
static void cfg_write(uint32_t dev, uint32_t reg, uint32_t v) {
  outl(0xcf8, 0x80000000u | dev << 11 | (reg & 0xfc));
  outl(0xcfc, v);
}
static uint8_t cfg_read8(uint32_t dev, uint32_t reg) {
  return (uint8_t)(cfg_read(dev, reg) >> ((reg & 3) * 8));
}

extern uint64_t pml4[512];
static uint64_t invlpg_window(uint64_t va) {
  __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory");
  return 0;
}
/* The first 2 MiB of the PCI window, uncached (see virtio_blk.c). */
static void map_pci_window(void) {
  uint64_t* pdpt = phys(pml4[0] & ~0xfffull);
  uint64_t* pd = phys(pdpt[3] & ~0xfffull);
  pd[0] = PCI_WINDOW | 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x80;
  kernel_call(invlpg_window, PCI_WINDOW);
}

static volatile uint8_t* common;
static volatile uint8_t* device_cfg;
static volatile uint8_t* notify;
static uint32_t notify_mult;

#define C8(o) (*(volatile uint8_t*)(common + (o)))
#define C16(o) (*(volatile uint16_t*)(common + (o)))
#define C32(o) (*(volatile uint32_t*)(common + (o)))
#define C64(o) (*(volatile uint64_t*)(common + (o)))
#define NUM_PAGES (*(volatile uint32_t*)(device_cfg + 0))
#define ACTUAL (*(volatile uint32_t*)(device_cfg + 4))

/* One split ring per queue: desc | avail at +256 | used at +4096. */
struct ring {
  volatile uint8_t* mem;
  uint16_t notify_off;
  uint16_t next_avail;
  uint16_t last_used;
};
static uint8_t ring_mem[3][2 * 4096] __attribute__((aligned(4096)));
static struct ring rings[3];
static uint32_t pfns[PFNS_PER_REQ] __attribute__((aligned(64)));

/* struct virtio_balloon_stat (§5.5.6.3). */
struct stat_entry {
  uint16_t tag;
  uint64_t val;
} __attribute__((packed));
static struct stat_entry stats[3] __attribute__((aligned(64)));
static int have_stats;
static uint32_t stats_refreshes;
static uint64_t ram_bytes, arena_pages;

struct desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};

static void setup_queue(uint16_t q) {
  struct ring* r = &rings[q];
  C16(0x16) = q;
  uint16_t max = C16(0x18);
  if (max < QSIZE) guest_fail("queue %u has only %u entries", q, max);
  C16(0x18) = QSIZE;
  C16(0x1a) = 0xffff; /* no MSI-X vector: polling */
  r->mem = ring_mem[q];
  memset((void*)r->mem, 0, sizeof ring_mem[0]);
  C64(0x20) = (uint64_t)(uintptr_t)r->mem;
  C64(0x28) = (uint64_t)(uintptr_t)(r->mem + 256);
  C64(0x30) = (uint64_t)(uintptr_t)(r->mem + 4096);
  r->notify_off = C16(0x1e);
  C16(0x1c) = 1;
}

/* Descriptor 0 holds one driver-readable buffer; make it available. */
static void post(uint16_t q, uint64_t addr, uint32_t len) {
  struct ring* r = &rings[q];
  volatile struct desc* d = (volatile struct desc*)r->mem;
  d->addr = addr;
  d->len = len;
  d->flags = 0;
  d->next = 0;
  volatile uint16_t* avail = (volatile uint16_t*)(r->mem + 256);
  avail[2 + r->next_avail % QSIZE] = 0;
  barrier();
  avail[1] = ++r->next_avail;
  barrier();
  *(volatile uint16_t*)(notify + r->notify_off * notify_mult) = q;
}

/* A used element on queue q? (non-blocking) */
static int poll_used(uint16_t q) {
  struct ring* r = &rings[q];
  if (C8(0x14) & 0x40) guest_fail("device needs reset (queue %u)", q);
  volatile uint16_t* used_idx = (volatile uint16_t*)(r->mem + 4096 + 2);
  if (*used_idx == r->last_used) return 0;
  barrier();
  volatile uint32_t* e = (volatile uint32_t*)(r->mem + 4096 + 4 + 8 * (r->last_used % QSIZE));
  if (e[0] != 0) guest_fail("queue %u returned head %u", q, e[0]);
  ++r->last_used;
  return 1;
}

/* The stats buffer came back: refresh it and post it again (§5.5.6.3). */
static void service_stats(void) {
  if (!have_stats || !poll_used(2)) return;
  ++stats_refreshes;
  stats[2].val = stats_refreshes;
  post(2, (uint64_t)(uintptr_t)stats, sizeof stats);
}

static void wait_used(uint16_t q) {
  uint64_t start = rdtsc();
  while (!poll_used(q)) {
    service_stats();
    cpu_relax();
    if (rdtsc() - start > 30ull * 1000 * 1000 * 1000) guest_fail("queue %u: no used buffer", q);
  }
}

/* Waits (servicing stats) until num_pages satisfies want(). */
static uint32_t wait_target(int (*want)(uint32_t), const char* what) {
  uint64_t start = rdtsc();
  for (;;) {
    uint32_t n = NUM_PAGES;
    if (want(n)) return n;
    service_stats();
    cpu_relax();
    if (rdtsc() - start > 300ull * 1000 * 1000 * 1000) guest_fail("no %s target within 300 s", what);
  }
}
static int nonzero(uint32_t n) {
  return n != 0 && n != 1;
}
static int zero(uint32_t n) {
  return n == 0;
}
static int one(uint32_t n) {
  return n == 1;
}

/* Sends arena pages [0, n) on queue q (0 inflate, 1 deflate). */
static void send_pages(uint16_t q, uint64_t n) {
  for (uint64_t done = 0; done < n;) {
    uint32_t k = (uint32_t)(n - done < PFNS_PER_REQ ? n - done : PFNS_PER_REQ);
    for (uint32_t i = 0; i < k; ++i) pfns[i] = (uint32_t)((ARENA >> 12) + done + i);
    post(q, (uint64_t)(uintptr_t)pfns, k * 4);
    wait_used(q);
    done += k;
  }
}

static void touch(uint64_t pages) {
  for (uint64_t p = 0; p < pages; ++p)
    *(volatile uint64_t*)phys(ARENA + p * 4096) = 0x5a5a5a5a00000000ull | p;
}

static uint64_t setup_device(uint32_t dev) {
  cfg_write(dev, 0x04, 0);
  int bar = -1;
  uint32_t off[5] = {0};
  uint8_t cap = cfg_read8(dev, 0x34) & 0xfc;
  for (int n = 0; cap && n < 48; ++n) {
    if (cfg_read8(dev, cap) == 0x09) {
      uint8_t type = cfg_read8(dev, cap + 3u);
      uint8_t b = cfg_read8(dev, cap + 4u);
      if (type >= 1 && type <= 4) {
        if (bar >= 0 && b != bar) guest_fail("virtio structures in two BARs (%d, %u)", bar, b);
        bar = b;
        off[type] = cfg_read(dev, cap + 8u);
        if (type == 2) notify_mult = cfg_read(dev, cap + 16u);
      }
    }
    cap = cfg_read8(dev, cap + 1u) & 0xfc;
  }
  if (bar < 0 || bar > 5) guest_fail("no virtio capabilities on device %u", dev);
  uint32_t reg = 0x10 + 4u * (uint32_t)bar;
  uint32_t orig = cfg_read(dev, reg);
  cfg_write(dev, reg, 0xffffffffu);
  uint64_t size = (uint64_t)(~(cfg_read(dev, reg) & ~0xfu)) + 1;
  if (size > 0x100000) guest_fail("virtio BAR too large (0x%llx)", (unsigned long long)size);
  cfg_write(dev, reg, (uint32_t)PCI_WINDOW);
  if ((orig & 0x6) == 0x4) cfg_write(dev, reg + 4, 0);
  cfg_write(dev, 0x04, 0x6);
  common = phys(PCI_WINDOW + off[1]);
  notify = phys(PCI_WINDOW + off[2]);
  device_cfg = phys(PCI_WINDOW + off[4]);

  /* §3.1.1 */
  C8(0x14) = 0;
  while (C8(0x14) != 0) cpu_relax();
  C8(0x14) = 1;
  C8(0x14) = 1 | 2;
  C32(0x00) = 0;
  uint32_t features = C32(0x04);
  C32(0x00) = 1;
  if (!(C32(0x04) & 1)) guest_fail("no VERSION_1");
  printf("BALLOON_FEATURES=%x\n", features);
  /* STATS_VQ only: no MUST_TELL_HOST, DEFLATE_ON_OOM, FREE_PAGE_HINT,
   * PAGE_POISON or REPORTING, so the queues are 0, 1 and 2 (§5.5.2). */
  uint32_t accept = features & (1u << 1);
  C32(0x08) = 0;
  C32(0x0c) = accept;
  C32(0x08) = 1;
  C32(0x0c) = 1;
  C8(0x14) = 1 | 2 | 8;
  if (!(C8(0x14) & 8)) guest_fail("FEATURES_OK refused");
  uint16_t nq = C16(0x12);
  if (nq < (accept ? 3 : 2)) guest_fail("num_queues %u", nq);
  C16(0x10) = 0xffff;
  setup_queue(0);
  setup_queue(1);
  if (accept) setup_queue(2);
  C8(0x14) = 1 | 2 | 8 | 4;
  if (C8(0x14) & 0x40) guest_fail("device needs reset after DRIVER_OK");
  return accept;
}

int guest_main(void) {
  uint64_t mib = cmdline_u64("mib", 64);
  arena_pages = mib * 256;
  if (mib == 0 || !phys_range_ok(ARENA, mib << 20)) guest_fail("mib=%llu does not fit", (unsigned long long)mib);
  int in_ram = 0;
  for (uint32_t i = 0; i < boot_info.n_mem; ++i) {
    const struct mem_range* m = &boot_info.mem[i];
    if (m->type != 1) continue;
    ram_bytes += m->len;
    if (m->start <= ARENA && ARENA + (mib << 20) <= m->start + m->len) in_ram = 1;
  }
  if (!in_ram) guest_fail("[64 MiB, +%llu MiB) is not RAM", (unsigned long long)mib);

  map_pci_window();
  uint32_t slot = 0;
  for (uint32_t dev = 0; dev < 32 && !slot; ++dev)
    if (cfg_read(dev, 0) == 0x10451af4) slot = dev;
  if (!slot) guest_fail("no virtio-balloon (1af4:1045) on bus 0");
  printf("BALLOON_PCI=%02x\n", slot);
  have_stats = setup_device(slot) != 0;

  /* Phase 1. */
  touch(arena_pages);
  if (have_stats) {
    stats[0] = (struct stat_entry){5, ram_bytes};                        /* MEMTOT */
    stats[1] = (struct stat_entry){4, ram_bytes - (arena_pages << 12)}; /* MEMFREE */
    stats[2] = (struct stat_entry){6, 0};                                /* AVAIL */
    post(2, (uint64_t)(uintptr_t)stats, sizeof stats);
  }
  printf("TOUCHED=%llu\n", (unsigned long long)arena_pages);

  /* Phase 2: inflate to the target (at most the arena). */
  uint32_t target = wait_target(nonzero, "inflate");
  printf("TARGET=%u\n", target);
  if (target > arena_pages) guest_fail("target %u is above the %llu arena pages", target, (unsigned long long)arena_pages);
  send_pages(0, target);
  ACTUAL = target;
  printf("INFLATED=%u\n", target);

  /* Phase 3: deflate, check what the host did, use the pages again. */
  wait_target(zero, "deflate");
  send_pages(1, target);
  ACTUAL = 0;
  printf("DEFLATED=%u\n", target);
  uint64_t zeroed = 0;
  for (uint64_t p = 0; p < target; ++p) zeroed += *(volatile uint64_t*)phys(ARENA + p * 4096) == 0;
  printf("ZEROED=%llu\n", (unsigned long long)zeroed);
  touch(target);
  printf("RETOUCHED=%u\n", target);

  /* Phase 4. */
  wait_target(one, "final");
  printf("STATS_REFRESHES=%u\n", stats_refreshes);
  puts_line("VIRTIO_BALLOON_DONE");
  return 0x10;
}

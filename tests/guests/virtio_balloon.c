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
 * PCI and virtqueue plumbing: runtime/virtio_pci.c.
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
#include "virtio_pci.h"

const char guest_name[] = "virtio_balloon";

#define QSIZE 8
#define ARENA 0x4000000ull /* 64 MiB */
#define PFNS_PER_REQ 256

static struct virtio_pci vdev;
#define NUM_PAGES (*(volatile uint32_t*)(vdev.device_cfg + 0))
#define ACTUAL (*(volatile uint32_t*)(vdev.device_cfg + 4))

static struct virtq queues[3]; /* inflateq, deflateq, statsq */
static uint8_t ring_mem[3][VIRTQ_RING_BYTES] __attribute__((aligned(4096)));
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

/* Descriptor 0 holds one driver-readable buffer; make it available. */
static void post(uint16_t q, uint64_t addr, uint32_t len) {
  virtq_set_desc(&queues[q], 0, addr, len, 0);
  virtq_post(&queues[q], 0);
}

/* A used element on queue q? (non-blocking) */
static int poll_used(uint16_t q) {
  if (virtio_pci_status(&vdev) & VSTATUS_NEEDS_RESET)
    guest_fail("device needs reset (queue %u)", q);
  uint32_t id, len;
  if (!virtq_used(&queues[q], &id, &len)) return 0;
  if (id != 0) guest_fail("queue %u returned head %u", q, id);
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
    if (rdtsc() - start > 300ull * 1000 * 1000 * 1000)
      guest_fail("no %s target within 300 s", what);
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
  virtio_pci_map(&vdev, dev, PCI_WINDOW, 0x100000);
  uint32_t features = virtio_pci_begin(&vdev);
  printf("BALLOON_FEATURES=%x\n", features);
  /* STATS_VQ only: no MUST_TELL_HOST, DEFLATE_ON_OOM, FREE_PAGE_HINT,
   * PAGE_POISON or REPORTING, so the queues are 0, 1 and 2 (§5.5.2). */
  uint32_t accept = features & (1u << 1);
  virtio_pci_features_ok(&vdev, accept);
  uint16_t nq = VCOMMON16(&vdev, VCOMMON_NUM_QUEUES);
  if (nq < (accept ? 3 : 2)) guest_fail("num_queues %u", nq);
  for (uint16_t q = 0; q < (accept ? 3 : 2); ++q)
    virtq_setup(&vdev, &queues[q], q, QSIZE, ring_mem[q], 0xffff);
  virtio_pci_driver_ok(&vdev);
  return accept;
}

int guest_main(void) {
  uint64_t mib = cmdline_u64("mib", 64);
  arena_pages = mib * 256;
  if (mib == 0 || !phys_range_ok(ARENA, mib << 20))
    guest_fail("mib=%llu does not fit", (unsigned long long)mib);
  int in_ram = 0;
  for (uint32_t i = 0; i < boot_info.n_mem; ++i) {
    const struct mem_range* m = &boot_info.mem[i];
    if (m->type != 1) continue;
    ram_bytes += m->len;
    if (m->start <= ARENA && ARENA + (mib << 20) <= m->start + m->len) in_ram = 1;
  }
  if (!in_ram) guest_fail("[64 MiB, +%llu MiB) is not RAM", (unsigned long long)mib);

  pci_map_window();
  int slot = pci_find(VIRTIO_PCI_ID(5));
  if (slot < 0) guest_fail("no virtio-balloon (1af4:1045) on bus 0");
  printf("BALLOON_PCI=%02x\n", (unsigned)slot);
  have_stats = setup_device((uint32_t)slot) != 0;

  /* Phase 1. */
  touch(arena_pages);
  if (have_stats) {
    stats[0] = (struct stat_entry){5, ram_bytes};                       /* MEMTOT */
    stats[1] = (struct stat_entry){4, ram_bytes - (arena_pages << 12)}; /* MEMFREE */
    stats[2] = (struct stat_entry){6, 0};                               /* AVAIL */
    post(2, (uint64_t)(uintptr_t)stats, sizeof stats);
  }
  printf("TOUCHED=%llu\n", (unsigned long long)arena_pages);

  /* Phase 2: inflate to the target (at most the arena). */
  uint32_t target = wait_target(nonzero, "inflate");
  printf("TARGET=%u\n", target);
  if (target > arena_pages)
    guest_fail("target %u is above the %llu arena pages", target, (unsigned long long)arena_pages);
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

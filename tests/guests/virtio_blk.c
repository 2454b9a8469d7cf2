/* virtio_blk: a minimal virtio 1.x PCI driver, run under skiff and QEMU.
 *
 * Enumerates bus 0 through configuration mechanism #1 (0xcf8/0xcfc),
 * finds the modern virtio-blk (1af4:1042) and virtio-rng (1af4:1044)
 * functions, walks their vendor capabilities (virtio 1.2 §4.1.4), moves the
 * BAR holding the virtio structures to a fixed address in the 32-bit PCI
 * window (both VMMs decode [0xc0000000, 0xe0000000) as PCI memory) and
 * drives one split virtqueue per device by polling, at CPL 3. No interrupts
 * (MSI-X stays disabled and INTx is never unmasked).
 *
 * Output (KEY=VALUE lines, checked by virtio_pci_test.py):
 *   PCI=dd:vvvv:dddd          every function on bus 0
 *   BLK_CAPACITY=sectors      virtio_blk_config.capacity
 *   BLK_QUEUES=n              common config num_queues
 *   BLK_SERIAL=str            VIRTIO_BLK_T_GET_ID
 *   BLK_READ_FNV=hex          FNV-1a of sectors 0-7 as read
 *   BLK_WRITTEN_FNV=hex       FNV-1a of the pattern written to sectors 8-15
 *   BLK_WRITE=ok              sectors 8-15 read back equal to the pattern
 *   RNG_LEN=n, RNG_NONZERO=1, RNG_DIFFERENT=1
 *   MSIX_BLK_IRR=1, MSIX_RNG_IRR=1  the queue's MSI-X vector (0x51 blk,
 *                             0x52 rng) reached this CPU's LAPIC: it is
 *                             pending in the IRR (IF stays 0 at CPL 3, so
 *                             it is never taken)
 *   with intx=1 (needs msix=0): INTX_LINE=n (Interrupt Line of the blk
 *   function), INTX_IRR=1 (after the requests, the IOAPIC pin named by
 *   Interrupt Line, programmed level-triggered — active high below 16, as
 *   ISA, active low from 16, as PCI — delivered its vector to this CPU's
 *   LAPIC), INTX_STATUS=1 (PCI Status bit 3 while the ISR is set),
 *   INTX_ISR=1 (ISR bit 0), INTX_STATUS_AFTER=0 (reading the ISR lowered it)
 *   with ring_reset=1: the blk function must offer VIRTIO_F_RING_RESET (bit
 *   40), which is negotiated; after the checks above a read is made
 *   available on queue 0 and the queue reset at once (virtio 1.2 §2.6.1.1:
 *   queue_reset, then queue_reset and queue_enable read 0, queue_size the
 *   maximum again), set up again with half the entries on other ring memory
 *   (§2.6.1.2) while DRIVER_OK stays set, and sectors 8-15 read on it:
 *   RING_RESET=ok (the pattern came back), RING_RESET_OLD_RING_QUIET=1 (the
 *   old used ring did not move after the reset). ring_reset_idle=1 waits
 *   for that read to be used before the reset (for VMMs that cannot reset
 *   a queue with a request in flight, such as QEMU 7.2's virtio-blk).
 * Command line: seed=N (pattern seed), rng=0 to skip the RNG, msix=0 to
 * leave MSI-X off, intx=1, ring_reset=1, ring_reset_idle=1 (see above).
 *
 * bench=SECONDS (bench/blk_vm): instead of the checks above, 4 KiB random
 * reads on the virtio-blk disk with 32 requests always in flight (queue 0,
 * 128 entries, 3 descriptors per request, no MSI-X and
 * VIRTQ_AVAIL_F_NO_INTERRUPT: pure polling), for SECONDS seconds after one
 * second of warm-up that also calibrates the TSC against the CMOS RTC's
 * seconds. Prints
 *   BENCH_DEPTH=32  BENCH_SECONDS=s  BENCH_REQS=n  BENCH_TSC_HZ=hz
 *   BENCH_IOPS=n    completed requests per second of the measured interval
 * Every completion's status must be OK and its head one the guest posted;
 * with verify=1 the first 8 bytes of each block read must be its 4 KiB
 * block number (little endian), as bench/blk_vm's disk is written.
 * PCI and virtqueue plumbing: runtime/virtio_pci.c.
 * Exit 0x10 on success; guest_fail (0x7e) on any protocol problem. */
#include "runtime.h"
#include "virtio_pci.h"

const char guest_name[] = "virtio_blk";

#define QSIZE 8

/* One virtio-pci function with its queue 0. */
struct vdev {
  struct virtio_pci pci;
  struct virtq q;
  uint8_t msix_vector; /* CPU vector of queue 0's MSI-X message; 0: none */
  uint16_t qsize;      /* entries; 0 in setup() means QSIZE */
  int ring_reset;      /* negotiate VIRTIO_F_RING_RESET (ring_reset=1) */
  int ring_reset_idle; /* ring_reset_idle=1: nothing in flight at the reset */
};

/* queue_reset in the common config (§4.1.4.3), VIRTIO_F_RING_RESET (§6). */
#define VCOMMON_Q_RESET 0x3a
#define F_RING_RESET_HI (1u << (40 - 32))

static uint8_t ring_mem[2][VIRTQ_RING_BYTES] __attribute__((aligned(4096)));
static uint8_t data_mem[2][8192] __attribute__((aligned(4096)));

/* MSI-X (PCI 3.0 §6.8.2): table entry 1 -> this CPU, `vector`; enable. */
static void setup_msix(const struct virtio_pci* p, uint8_t vector) {
  uint32_t dev = p->dev;
  uint8_t cap = p->msix_cap;
  uint32_t table = pci_cfg_read(dev, cap + 4u);
  int bir = (int)(table & 7);
  uint64_t bar_addr = p->base;
  if (bir != p->bar) {
    bar_addr = p->base + 0x80000;
    pci_assign_bar(dev, bir, bar_addr, 0x80000);
  }
  pci_cfg_write(dev, 0x04, 0x6);
  volatile uint32_t* e = phys(bar_addr + (table & ~7u) + 16);
  e[0] = 0xfee00000u | lapic_id() << 12; /* fixed, physical destination */
  e[1] = 0;
  e[2] = vector;
  e[3] = 0; /* unmasked */
  uint32_t ctl = pci_cfg_read(dev, cap);
  /* Enable, no Function Mask */
  pci_cfg_write(dev, cap, (ctl & ~(0x4000u << 16)) | (0x8000u << 16));
}

static void setup(struct vdev* v, uint32_t dev, int index, uint8_t msix_vector) {
  struct virtio_pci* p = &v->pci;
  virtio_pci_map(p, dev, PCI_WINDOW + (uint64_t)index * 0x100000, 0x80000);
  v->msix_vector = 0;
  if (msix_vector) {
    if (!p->msix_cap) guest_fail("device %u has no MSI-X capability", dev);
    setup_msix(p, msix_vector);
    v->msix_vector = msix_vector;
  }
  if (v->qsize == 0) v->qsize = QSIZE;
  virtio_pci_begin(p);
  if (v->ring_reset) {
    /* virtio_pci_features_ok() with VIRTIO_F_RING_RESET in the high word. */
    VCOMMON32(p, VCOMMON_DFSELECT) = 1;
    if (!(VCOMMON32(p, VCOMMON_DF) & F_RING_RESET_HI))
      guest_fail("device %u does not offer VIRTIO_F_RING_RESET", dev);
    VCOMMON32(p, VCOMMON_GFSELECT) = 0;
    VCOMMON32(p, VCOMMON_GF) = 0;
    VCOMMON32(p, VCOMMON_GFSELECT) = 1;
    VCOMMON32(p, VCOMMON_GF) = 1 | F_RING_RESET_HI; /* VERSION_1, RING_RESET */
    VCOMMON8(p, VCOMMON_STATUS) = VSTATUS_ACKNOWLEDGE | VSTATUS_DRIVER | VSTATUS_FEATURES_OK;
    if (!(VCOMMON8(p, VCOMMON_STATUS) & VSTATUS_FEATURES_OK))
      guest_fail("device %u refused FEATURES_OK with RING_RESET", dev);
    VCOMMON16(p, VCOMMON_MSIX_CONFIG) = 0xffff;
  } else {
    virtio_pci_features_ok(p, 0); /* VERSION_1 only */
  }
  /* Queue 0 -> MSI-X table entry 1. */
  virtq_setup(p, &v->q, 0, v->qsize, ring_mem[index], v->msix_vector ? 1 : 0xffff);
  virtio_pci_driver_ok(p);
}

/* Posts a chain of n descriptors (all from index 0) and polls for it. */
static uint32_t submit(struct vdev* v, const struct virtq_desc* d, int n) {
  struct virtq* q = &v->q;
  for (int i = 0; i < n; ++i) {
    q->desc[i].addr = d[i].addr;
    q->desc[i].len = d[i].len;
    q->desc[i].flags = (uint16_t)(d[i].flags | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
    q->desc[i].next = (uint16_t)(i + 1);
  }
  virtq_post(q, 0);
  uint32_t head, len;
  uint64_t start = rdtsc();
  while (!virtq_used(q, &head, &len)) {
    cpu_relax();
    if (rdtsc() - start > 30ull * 1000 * 1000 * 1000)
      guest_fail("device %u: no used buffer (status 0x%x)", v->pci.dev, virtio_pci_status(&v->pci));
  }
  if (head != 0) guest_fail("device %u returned head %u", v->pci.dev, head);
  return len;
}

struct blk_hdr {
  uint32_t type, reserved;
  uint64_t sector;
};

static uint8_t blk_io(struct vdev* v, uint32_t type, uint64_t sector, void* buf, uint32_t len) {
  struct blk_hdr* h = (struct blk_hdr*)data_mem[0];
  uint8_t* status = data_mem[0] + 64;
  h->type = type;
  h->reserved = 0;
  h->sector = sector;
  *status = 0xff;
  struct virtq_desc d[3] = {
      {(uint64_t)(uintptr_t)h, 16, 0, 0},
      {(uint64_t)(uintptr_t)buf, len, (uint16_t)(type == 1 ? 0 : 2), 0},
      {(uint64_t)(uintptr_t)status, 1, 2, 0},
  };
  if (len == 0) {
    d[1] = d[2]; /* FLUSH: header and status only */
    submit(v, d, 2);
  } else {
    submit(v, d, 3);
  }
  return *status;
}

static uint8_t blk_buf[4096] __attribute__((aligned(512)));
static uint8_t pattern[4096];

static void test_blk(struct vdev* v) {
  uint64_t cap = *(volatile uint64_t*)v->pci.device_cfg;
  printf("BLK_CAPACITY=%llu\n", (unsigned long long)cap);
  printf("BLK_QUEUES=%u\n", VCOMMON16(&v->pci, VCOMMON_NUM_QUEUES));
  if (cap < 16) guest_fail("disk too small: %llu sectors", (unsigned long long)cap);

  memset(blk_buf, 0, 21);
  uint8_t s = blk_io(v, 8, 0, blk_buf, 20); /* GET_ID */
  if (s != 0) guest_fail("GET_ID status %u", s);
  blk_buf[20] = 0;
  printf("BLK_SERIAL=%s\n", (const char*)blk_buf);

  s = blk_io(v, 0, 0, blk_buf, 4096);
  if (s != 0) guest_fail("read status %u", s);
  printf("BLK_READ_FNV=%llx\n", (unsigned long long)fnv1a64(blk_buf, 4096));

  uint64_t seed = cmdline_u64("seed", 1);
  for (uint32_t i = 0; i < sizeof pattern; ++i) pattern[i] = (uint8_t)(i * 7u + seed + (i >> 9));
  memcpy(blk_buf, pattern, 4096);
  s = blk_io(v, 1, 8, blk_buf, 4096);
  if (s != 0) guest_fail("write status %u", s);
  printf("BLK_WRITTEN_FNV=%llx\n", (unsigned long long)fnv1a64(pattern, 4096));
  memset(blk_buf, 0, 4096);
  s = blk_io(v, 0, 8, blk_buf, 4096);
  if (s != 0) guest_fail("read-back status %u", s);
  if (memcmp(blk_buf, pattern, 4096) != 0) guest_fail("sectors 8-15 differ after write");
  s = blk_io(v, 4, 0, blk_buf, 0); /* FLUSH */
  if (s != 0) guest_fail("flush status %u", s);
  puts_line("BLK_WRITE=ok");
}

/* ---- ring_reset=1: virtqueue reset (§2.6.1) of the blk queue ---- */
static uint8_t ring_mem_after_reset[VIRTQ_RING_BYTES] __attribute__((aligned(4096)));

static void test_ring_reset(struct vdev* v) {
  struct virtio_pci* p = &v->pci;
  struct virtq* q = &v->q;
  /* A read of sectors 8-15 into its own buffers, made available and not
   * waited for: it may be done or in flight when the queue resets. */
  struct blk_hdr* h = (struct blk_hdr*)(data_mem[0] + 128);
  volatile uint8_t* status = data_mem[0] + 192;
  h->type = 0;
  h->reserved = 0;
  h->sector = 8;
  *status = 0xff;
  virtq_set_desc(q, 0, (uint64_t)(uintptr_t)h, 16, VIRTQ_DESC_F_NEXT);
  q->desc[0].next = 1;
  virtq_set_desc(q, 1, (uint64_t)(uintptr_t)(data_mem[0] + 4096), 4096,
                 VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT);
  q->desc[1].next = 2;
  virtq_set_desc(q, 2, (uint64_t)(uintptr_t)status, 1, VIRTQ_DESC_F_WRITE);
  virtq_post(q, 0);
  if (v->ring_reset_idle) {
    /* ring_reset_idle=1 (the QEMU reference): the read is used before the
     * reset. QEMU 7.2's virtio-blk has no queue-reset hook: a read still in
     * flight at the reset completes onto the reset queue afterwards
     * (virtqueue_flush's inuse -= 1 underflows: "Virtqueue size exceeded"
     * on the next request), so only this order is deterministic there. */
    uint32_t head, len;
    uint64_t start = rdtsc();
    while (!virtq_used(q, &head, &len)) {
      cpu_relax();
      if (rdtsc() - start > 30ull * 1000 * 1000 * 1000)
        guest_fail("the read before the reset was never used");
    }
    if (*status != 0) guest_fail("read status %u before queue reset", *status);
  }

  uint16_t max = 0;
  VCOMMON16(p, VCOMMON_Q_SELECT) = 0;
  VCOMMON16(p, VCOMMON_Q_RESET) = 1;
  /* §4.1.4.3.2: the reset is complete once queue_reset reads 0 again. */
  uint64_t start = rdtsc();
  while (VCOMMON16(p, VCOMMON_Q_RESET) != 0) {
    cpu_relax();
    if (rdtsc() - start > 30ull * 1000 * 1000 * 1000) guest_fail("queue_reset never read 0");
  }
  volatile uint16_t* old_used_idx = (volatile uint16_t*)(q->used + 2);
  uint16_t used_at_reset = *old_used_idx;
  if (VCOMMON16(p, VCOMMON_Q_ENABLE) != 0) guest_fail("queue_enable is not 0 after queue_reset");
  max = VCOMMON16(p, VCOMMON_Q_SIZE);
  if (max < v->qsize) guest_fail("queue_size %u after queue_reset (set %u before)", max, v->qsize);
  if (virtio_pci_status(p) & VSTATUS_NEEDS_RESET)
    guest_fail("device needs reset after queue_reset");

  /* §2.6.1.2: re-enable it with new values; DRIVER_OK is still set. */
  virtq_setup(p, q, 0, (uint16_t)(v->qsize / 2), ring_mem_after_reset, v->msix_vector ? 1 : 0xffff);
  memset(blk_buf, 0, 4096);
  uint8_t s = blk_io(v, 0, 8, blk_buf, 4096);
  if (s != 0) guest_fail("read status %u after queue reset", s);
  if (memcmp(blk_buf, pattern, 4096) != 0) guest_fail("sectors 8-15 differ after queue reset");
  puts_line("RING_RESET=ok");
  printf("RING_RESET_OLD_RING_QUIET=%d\n", *old_used_idx == used_at_reset);
}

static void test_rng(struct vdev* v) {
  uint8_t* a = data_mem[1];
  uint8_t* b = data_mem[1] + 4096;
  memset(a, 0, 64);
  memset(b, 0, 64);
  struct virtq_desc d = {(uint64_t)(uintptr_t)a, 64, VIRTQ_DESC_F_WRITE, 0};
  uint32_t n1 = submit(v, &d, 1);
  d.addr = (uint64_t)(uintptr_t)b;
  uint32_t n2 = submit(v, &d, 1);
  printf("RNG_LEN=%u\n", n1);
  int nonzero = 0;
  for (int i = 0; i < 64; ++i) nonzero |= a[i];
  printf("RNG_NONZERO=%d\n", nonzero != 0);
  printf("RNG_DIFFERENT=%d\n", n1 == n2 && n1 > 0 && memcmp(a, b, n1) != 0);
}

/* ---- bench=SECONDS: 4 KiB random reads, 32 in flight ---- */
#define BENCH_DEPTH 32
#define BENCH_QSIZE 128
static uint8_t bench_data[BENCH_DEPTH][4096] __attribute__((aligned(4096)));
static struct blk_hdr bench_hdr[BENCH_DEPTH];
static volatile uint8_t bench_status[BENCH_DEPTH];

static uint64_t xorshift64(uint64_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* The RTC's seconds register, read outside an update cycle (MC146818:
 * register A bit 7, update in progress). */
static uint8_t rtc_seconds(void) {
  while (cmos_read(0x0a) & 0x80) cpu_relax();
  return cmos_read(0x00);
}

/* Request i always uses descriptors 3i (header), 3i+1 (data), 3i+2
 * (status), head 3i; only the header's sector changes. */
static void bench_post(struct vdev* v, uint32_t i, uint64_t sector) {
  volatile struct virtq_desc* table = v->q.desc;
  uint16_t d = (uint16_t)(3 * i);
  bench_hdr[i].type = 0; /* VIRTIO_BLK_T_IN */
  bench_hdr[i].reserved = 0;
  bench_hdr[i].sector = sector;
  bench_status[i] = 0xff;
  table[d].addr = (uint64_t)(uintptr_t)&bench_hdr[i];
  table[d].len = 16;
  table[d].flags = 1; /* NEXT */
  table[d].next = (uint16_t)(d + 1);
  table[d + 1].addr = (uint64_t)(uintptr_t)bench_data[i];
  table[d + 1].len = 4096;
  table[d + 1].flags = 1 | 2; /* NEXT | WRITE */
  table[d + 1].next = (uint16_t)(d + 2);
  table[d + 2].addr = (uint64_t)(uintptr_t)&bench_status[i];
  table[d + 2].len = 1;
  table[d + 2].flags = 2; /* WRITE */
  table[d + 2].next = 0;
  virtq_add(&v->q, d);
}

static void bench_blk(struct vdev* v, uint64_t seconds) {
  uint64_t cap = *(volatile uint64_t*)v->pci.device_cfg;
  uint64_t blocks = cap / 8;
  if (blocks == 0)
    guest_fail("disk too small for 4 KiB reads: %llu sectors", (unsigned long long)cap);
  struct virtq* q = &v->q;
  volatile uint16_t* used_flags = (volatile uint16_t*)q->used;
  uint64_t rnd = cmdline_u64("seed", 1) * 0x9e3779b97f4a7c15ull | 1;
  int verify = (int)cmdline_u64("verify", 0);
  q->avail[0] = 1; /* VIRTQ_AVAIL_F_NO_INTERRUPT: polling (§2.7.7) */
  for (uint32_t i = 0; i < BENCH_DEPTH; ++i) bench_post(v, i, (xorshift64(&rnd) % blocks) * 8);
  virtq_publish(q);
  virtq_notify(q);

  /* Phase 0: warm-up until an RTC second starts; phase 1: that second
   * calibrates the TSC; phase 2: the measured `seconds`. */
  int phase = 0;
  uint8_t sec = rtc_seconds();
  uint64_t done = 0, t1 = 0, done1 = 0, tsc_hz = 0, t_end = 0, spins = 0;
  for (;;) {
    int posted = 0;
    uint32_t head, len;
    while (virtq_used(q, &head, &len)) {
      uint32_t i = head / 3;
      if (head % 3 != 0 || i >= BENCH_DEPTH) guest_fail("bench: device returned head %u", head);
      if (bench_status[i] != 0) guest_fail("bench: read status %u", bench_status[i]);
      if (verify && *(volatile uint64_t*)bench_data[i] != bench_hdr[i].sector / 8)
        guest_fail("bench: block %llu read back as %llu",
                   (unsigned long long)(bench_hdr[i].sector / 8),
                   (unsigned long long)*(volatile uint64_t*)bench_data[i]);
      ++done;
      if (phase < 3) {
        bench_post(v, i, (xorshift64(&rnd) % blocks) * 8);
        posted = 1;
      }
    }
    if (posted) {
      virtq_publish(q);
      if (!(*used_flags & 1)) virtq_notify(q); /* unless VIRTQ_USED_F_NO_NOTIFY */
    }
    if (phase == 3) {
      if ((uint16_t)(q->next_avail - q->last_used) == 0) break; /* drained */
      if (++spins > (1ull << 34)) guest_fail("bench: requests never completed");
      continue;
    }
    if (phase < 2) {
      uint8_t now = rtc_seconds();
      if (now == sec) continue;
      sec = now;
      uint64_t t = rdtsc();
      if (phase == 0) {
        t1 = t;
        phase = 1;
        continue;
      }
      tsc_hz = t - t1;
      t1 = t;
      done1 = done;
      t_end = t1 + seconds * tsc_hz;
      phase = 2;
      continue;
    }
    uint64_t t = rdtsc();
    if (t >= t_end) {
      printf("BENCH_DEPTH=%u\n", BENCH_DEPTH);
      printf("BENCH_SECONDS=%llu\n", (unsigned long long)seconds);
      printf("BENCH_REQS=%llu\n", (unsigned long long)(done - done1));
      printf("BENCH_TSC_HZ=%llu\n", (unsigned long long)tsc_hz);
      printf("BENCH_IOPS=%llu\n", (unsigned long long)((done - done1) * tsc_hz / (t - t1)));
      phase = 3; /* stop posting; wait for what is in flight */
    }
  }
}

static int irr(uint8_t vector) {
  return (int)((lapic_read(0x200 + 0x10u * (vector / 32u)) >> (vector % 32u)) & 1);
}

/* ---- intx=1: legacy INTx through the IOAPIC pin Interrupt Line names ---- */
#define IOAPIC_BASE 0xfec00000ull
#define INTX_VECTOR 0x61
static void ioapic_write(uint32_t reg, uint32_t v) {
  volatile uint32_t* io = phys(IOAPIC_BASE);
  io[0] = reg; /* IOREGSEL */
  io[4] = v;   /* IOWIN at +0x10 */
}

static uint32_t intx_pin;

static void intx_route(struct vdev* v) {
  uint32_t line = pci_cfg_read8(v->pci.dev, 0x3c);
  if (pci_cfg_read8(v->pci.dev, 0x3d) != 1) guest_fail("blk function does not use INTA#");
  if (line >= 24) guest_fail("Interrupt Line %u is not an IOAPIC pin", line);
  printf("INTX_LINE=%u\n", line);
  intx_pin = line;
  lapic_write(0xf0, lapic_read(0xf0) | 0x100); /* LAPIC software enable */
  if (irr(INTX_VECTOR)) guest_fail("INTx vector pending before any request");
  /* Redirection entry (82093AA §3.2.4): fixed delivery, physical
   * destination, level triggered (bit 15); polarity (bit 13) low for the
   * PCI GSIs from 16, high for ISA IRQs. */
  uint32_t low = INTX_VECTOR | 1u << 15 | (line >= 16 ? 1u << 13 : 0);
  ioapic_write(0x11 + 2 * line, lapic_id() << 24);
  ioapic_write(0x10 + 2 * line, low);
}

static void intx_check(struct vdev* v) {
  printf("INTX_STATUS=%u\n", (pci_cfg_read(v->pci.dev, 0x04) >> 19) & 1);
  printf("INTX_IRR=%d\n", irr(INTX_VECTOR));
  printf("INTX_ISR=%u\n", *v->pci.isr & 1);
  printf("INTX_STATUS_AFTER=%u\n", (pci_cfg_read(v->pci.dev, 0x04) >> 19) & 1);
  ioapic_write(0x10 + 2 * intx_pin, 1u << 16); /* masked again */
}

int guest_main(void) {
  pci_map_window();
  uint64_t bench = cmdline_u64("bench", 0);
  if (bench) {
    struct vdev v = {0};
    v.qsize = BENCH_QSIZE;
    int dev = pci_find(VIRTIO_PCI_ID(2));
    if (dev < 0) guest_fail("no virtio-blk (1af4:1042) on bus 0");
    setup(&v, (uint32_t)dev, 0, 0);
    bench_blk(&v, bench);
    puts_line("VIRTIO_DONE");
    return 0x10;
  }
  int msix = (int)cmdline_u64("msix", 1);
  if (msix) lapic_write(0xf0, lapic_read(0xf0) | 0x100); /* LAPIC software enable */
  struct vdev blk = {0}, rng = {0};
  int have_blk = 0, have_rng = 0;
  blk.ring_reset = (int)cmdline_u64("ring_reset", 0);
  blk.ring_reset_idle = (int)cmdline_u64("ring_reset_idle", 0);
  for (uint32_t dev = 0; dev < 32; ++dev) {
    uint32_t id = pci_cfg_read(dev, 0);
    if ((id & 0xffff) == 0xffff) continue;
    printf("PCI=%02x:%04x:%04x\n", dev, id & 0xffff, id >> 16);
    if (id == VIRTIO_PCI_ID(2) && !have_blk) {
      setup(&blk, dev, 0, msix ? 0x51 : 0);
      have_blk = 1;
    } else if (id == VIRTIO_PCI_ID(4) && !have_rng) {
      setup(&rng, dev, 1, msix ? 0x52 : 0);
      have_rng = 1;
    }
  }
  if (!have_blk) guest_fail("no virtio-blk (1af4:1042) on bus 0");
  if (msix && (irr(0x51) || irr(0x52))) guest_fail("MSI-X vector pending before any request");
  int intx = (int)cmdline_u64("intx", 0);
  if (intx && msix) guest_fail("intx=1 needs msix=0");
  if (intx) intx_route(&blk);
  test_blk(&blk);
  if (blk.ring_reset) test_ring_reset(&blk);
  if (intx) intx_check(&blk);
  if (msix) printf("MSIX_BLK_IRR=%d\n", irr(0x51));
  if (cmdline_u64("rng", 1)) {
    if (!have_rng) guest_fail("no virtio-rng (1af4:1044) on bus 0");
    test_rng(&rng);
    if (msix) printf("MSIX_RNG_IRR=%d\n", irr(0x52));
  }
  puts_line("VIRTIO_DONE");
  return 0x10;
}

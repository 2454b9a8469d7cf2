/* virtio_console: a minimal virtio 1.x console driver (virtio 1.2 §5.3), run
 * under skiff (--console) and QEMU (virtio-serial-pci + virtconsole).
 *
 * Finds the modern virtio-console function (1af4:1043) on bus 0, places its
 * virtio BAR in the 32-bit PCI window, negotiates VERSION_1 (and
 * EMERG_WRITE when offered; never MULTIPORT, so port 0 is the console on
 * queues 0/1, §5.3.2) and drives both queues by polling at CPL 3:
 *   - posts receive buffers on receiveq (queue 0),
 *   - writes "hello from hvc0\n" on transmitq (queue 1),
 *   - with F_EMERG_WRITE, writes "EMERG=ok\n" byte by byte through the
 *     emerg_wr config field (§5.3.4),
 *   - with echo=1 (default), waits for one line on receiveq and sends back
 *     "echo: LINE\n" on transmitq.
 * The PCI helpers repeat virtio_blk.c's on purpose: each guest is one file.
 *
 * Serial output (KEY=VALUE, checked by virtio_console_test.py):
 *   CONSOLE_PCI=dd           slot of the console function
 *   CONSOLE_FEATURES=hex     device feature bits 0-31
 *   CONSOLE_MAX_PORTS=n      config max_nr_ports (only meaningful with MULTIPORT)
 *   CONSOLE_TX=ok            the transmit chain came back
 *   CONSOLE_RX=line          the line received (echo=1)
 *   CONSOLE_RESET=ok         reset=1: the device was reset after DRIVER_OK
 * Exit 0x10 on success; guest_fail (0x7e) on any protocol problem. */
#include "runtime.h"

const char guest_name[] = "virtio_console";

#define PCI_WINDOW 0xc0000000ull
#define QSIZE 8
#define RXBUF 64

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

/* One split ring per queue: desc | avail at +256 | used at +4096. */
struct ring {
  volatile uint8_t* mem;
  uint16_t notify_off;
  uint16_t next_avail;
  uint16_t last_used;
};
static uint8_t ring_mem[2][2 * 4096] __attribute__((aligned(4096)));
static uint8_t rx_bufs[QSIZE][RXBUF] __attribute__((aligned(64)));
static uint8_t tx_buf[256] __attribute__((aligned(64)));
static struct ring rings[2];

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

/* Descriptor `i` holds one buffer; make it available. */
static void post(uint16_t q, uint16_t i, uint64_t addr, uint32_t len, int writable) {
  struct ring* r = &rings[q];
  volatile struct desc* d = (volatile struct desc*)r->mem + i;
  d->addr = addr;
  d->len = len;
  d->flags = writable ? 2 : 0;
  d->next = 0;
  volatile uint16_t* avail = (volatile uint16_t*)(r->mem + 256);
  avail[2 + r->next_avail % QSIZE] = i;
  barrier();
  avail[1] = ++r->next_avail;
  barrier();
  *(volatile uint16_t*)(notify + r->notify_off * notify_mult) = q;
}

/* Waits up to `secs` seconds (TSC ticks at >= 1 GHz here) for a used
 * element; returns 0 on timeout. */
static int wait_used(uint16_t q, uint32_t* id, uint32_t* len, uint64_t secs) {
  struct ring* r = &rings[q];
  volatile uint16_t* used_idx = (volatile uint16_t*)(r->mem + 4096 + 2);
  uint64_t start = rdtsc();
  while (*used_idx == r->last_used) {
    cpu_relax();
    if (C8(0x14) & 0x40) guest_fail("device needs reset (queue %u)", q);
    if (rdtsc() - start > secs * 1000ull * 1000 * 1000) return 0;
  }
  barrier();
  volatile uint32_t* e = (volatile uint32_t*)(r->mem + 4096 + 4 + 8 * (r->last_used % QSIZE));
  *id = e[0];
  *len = e[1];
  ++r->last_used;
  return 1;
}

static void transmit(const char* s) {
  uint32_t n = (uint32_t)strlen(s);
  if (n > sizeof tx_buf) guest_fail("transmit of %u bytes", n);
  memcpy(tx_buf, s, n);
  post(1, 0, (uint64_t)(uintptr_t)tx_buf, n, 0);
  uint32_t id, len;
  if (!wait_used(1, &id, &len, 30)) guest_fail("transmit not completed");
  if (id != 0) guest_fail("transmitq returned head %u", id);
}

static uint32_t setup_device(uint32_t dev) {
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
  printf("CONSOLE_FEATURES=%x\n", features);
  uint32_t accept = features & (1u << 2); /* EMERG_WRITE only; never SIZE or MULTIPORT */
  C32(0x08) = 0;
  C32(0x0c) = accept;
  C32(0x08) = 1;
  C32(0x0c) = 1;
  C8(0x14) = 1 | 2 | 8;
  if (!(C8(0x14) & 8)) guest_fail("FEATURES_OK refused");
  if (C16(0x12) < 2) guest_fail("num_queues %u < 2", C16(0x12));
  C16(0x10) = 0xffff;
  setup_queue(0);
  setup_queue(1);
  C8(0x14) = 1 | 2 | 8 | 4;
  if (C8(0x14) & 0x40) guest_fail("device needs reset after DRIVER_OK");
  printf("CONSOLE_MAX_PORTS=%u\n", *(volatile uint32_t*)(device_cfg + 4));
  return accept;
}

int guest_main(void) {
  map_pci_window();
  uint32_t slot = 0;
  for (uint32_t dev = 0; dev < 32 && !slot; ++dev)
    if (cfg_read(dev, 0) == 0x10431af4) slot = dev;
  if (!slot) guest_fail("no virtio-console (1af4:1043) on bus 0");
  printf("CONSOLE_PCI=%02x\n", slot);
  uint32_t accepted = setup_device(slot);

  /* Receive buffers first, so input can arrive while we transmit. */
  for (uint16_t i = 0; i < QSIZE; ++i) post(0, i, (uint64_t)(uintptr_t)rx_bufs[i], RXBUF, 1);

  transmit("hello from hvc0\n");
  puts_line("CONSOLE_TX=ok");
  if (accepted & (1u << 2)) {
    for (const char* p = "EMERG=ok\n"; *p; ++p) *(volatile uint32_t*)(device_cfg + 8) = (uint8_t)*p;
  }

  if (cmdline_u64("echo", 1)) {
    char line[RXBUF * 2];
    uint32_t n = 0;
    int done = 0;
    while (!done) {
      uint32_t id, len;
      if (!wait_used(0, &id, &len, 60)) guest_fail("no input line within 60 s (%u bytes)", n);
      if (id >= QSIZE || len > RXBUF) guest_fail("receiveq returned head %u len %u", id, len);
      for (uint32_t i = 0; i < len && !done; ++i) {
        char c = (char)rx_bufs[id][i];
        if (c == '\n' || c == '\r') {
          done = 1;
        } else if (n + 1 < sizeof line) {
          line[n++] = c;
        }
      }
      post(0, (uint16_t)id, (uint64_t)(uintptr_t)rx_bufs[id], RXBUF, 1); /* recycle */
    }
    line[n] = 0;
    printf("CONSOLE_RX=%s\n", line);
    char reply[sizeof line + 16];
    memcpy(reply, "echo: ", 6);
    memcpy(reply + 6, line, n);
    reply[6 + n] = '\n';
    reply[7 + n] = 0;
    transmit(reply);
  }
  if (cmdline_u64("reset", 0)) {
    /* A driver reset of the live device (§2.4): skiff reports it to the
     * event monitor as {"source":"virtio-device","event":"reset"}. */
    C8(0x14) = 0;
    while (C8(0x14) != 0) cpu_relax();
    puts_line("CONSOLE_RESET=ok");
  }
  puts_line("VIRTIO_CONSOLE_DONE");
  return 0x10;
}

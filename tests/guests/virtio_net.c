/* virtio_net: a minimal virtio 1.x net driver (PCI, polling, CPL 3), run
 * under QEMU's virtio-net-pci and under skiff --net.
 *
 * Finds the modern virtio-net function (1af4:1041) on bus 0, moves its
 * virtio BAR into the 32-bit PCI window (as virtio_blk.c does), negotiates
 * VERSION_1 + MAC (+ STATUS when offered; MQ is reported, not negotiated:
 * it needs the control queue, and one pair is what this test uses), and
 * drives receiveq1 (queue 0) and transmitq1 (queue 1) by polling. No
 * interrupts. Every buffer starts with the 12-byte virtio_net_hdr (virtio
 * 1.2 §5.1.6: with VERSION_1 num_buffers is always there), all zero on
 * transmit (no offloads).
 *
 * The exchange (virtio_net_test.py is the other side, on a tap):
 *   1. send `frames` frames (ethertype 0x88b5, dst ff:ff:ff:ff:ff:ff, src
 *      the device's MAC), frame i of length 60 + (i * 97) % 1455 bytes with
 *      payload "SKNT", le32 i, then pattern bytes (i * 31 + seed + k) & 0xff;
 *   2. receive `frames` frames of ethertype 0x88b6 (others, e.g. the host
 *      kernel's own traffic, are counted and skipped) built the same way by
 *      the host, dst = the device's MAC, and check every byte.
 * Output (KEY=VALUE lines):
 *   PCI=dd:vvvv:dddd every function on bus 0;  NET_MAC=xx:xx:xx:xx:xx:xx
 *   NET_FEATURES=hex (device features, low 32 bits);  NET_MAX_PAIRS=n (MQ)
 *   NET_LINK=0|1 (STATUS);  TX_FRAMES=n TX_BYTES=n;  RX_FRAMES=n RX_BYTES=n
 *   RX_OTHER=n;  NET_DONE
 * Command line: frames=N (default 32, at most 4096), seed=N.
 * Exit 0x10 on success; guest_fail (0x7e) on any protocol problem. */
#include "runtime.h"

const char guest_name[] = "virtio_net";

#define PCI_WINDOW 0xc0000000ull
#define QSIZE 16
#define BUF 2048 /* 12-byte header + a 1514-byte frame fit */
#define HDR 12
#define ETYPE_TX 0x88b5
#define ETYPE_RX 0x88b6

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
static void map_pci_window(void) {
  uint64_t* pdpt = phys(pml4[0] & ~0xfffull);
  uint64_t* pd = phys(pdpt[3] & ~0xfffull);
  pd[0] = PCI_WINDOW | 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x80; /* P W U PWT PCD PS */
  kernel_call(invlpg_window, PCI_WINDOW);
}

struct desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};

struct vq {
  volatile struct desc* desc;
  volatile uint16_t* avail; /* flags, idx, ring[QSIZE] */
  volatile uint8_t* used;   /* flags, idx, {id, len}[QSIZE] */
  volatile uint16_t* notify;
  uint16_t next_avail, last_used;
};

static uint32_t dev_id;
static volatile uint8_t* common;
static volatile uint8_t* devcfg;
static struct vq rxq, txq;
static uint8_t ring_mem[2][3 * 4096] __attribute__((aligned(4096)));
static uint8_t rx_buf[QSIZE][BUF] __attribute__((aligned(4096)));
static uint8_t tx_buf[BUF] __attribute__((aligned(4096)));
static uint8_t mac[6];

#define C8(o) (*(volatile uint8_t*)(common + (o)))
#define C16(o) (*(volatile uint16_t*)(common + (o)))
#define C32(o) (*(volatile uint32_t*)(common + (o)))
#define C64(o) (*(volatile uint64_t*)(common + (o)))

static void assign_bar(uint32_t dev, int bar, uint64_t addr) {
  uint32_t reg = 0x10 + 4u * (uint32_t)bar;
  uint32_t orig = cfg_read(dev, reg);
  if (orig & 1) guest_fail("BAR %d is an I/O BAR", bar);
  cfg_write(dev, reg, 0xffffffffu);
  uint64_t size = (uint64_t)(~(cfg_read(dev, reg) & ~0xfu)) + 1;
  if (size > 0x100000) guest_fail("BAR %d too large (0x%llx)", bar, (unsigned long long)size);
  cfg_write(dev, reg, (uint32_t)addr);
  if ((orig & 0x6) == 0x4) cfg_write(dev, reg + 4, 0);
}

static void setup_queue(struct vq* q, uint16_t index, volatile uint8_t* notify_base,
                        uint32_t mult) {
  C16(0x16) = index; /* queue_select */
  uint16_t max = C16(0x18);
  if (max < QSIZE) guest_fail("queue %u has only %u entries", index, max);
  C16(0x18) = QSIZE;
  C16(0x1a) = 0xffff; /* no MSI-X vector */
  uint8_t* mem = ring_mem[index];
  memset(mem, 0, sizeof ring_mem[0]);
  q->desc = (volatile struct desc*)mem;
  q->avail = (volatile uint16_t*)(mem + 256);
  q->used = mem + 4096;
  q->notify = (volatile uint16_t*)(notify_base + (uint32_t)C16(0x1e) * mult);
  q->next_avail = q->last_used = 0;
  C64(0x20) = (uint64_t)(uintptr_t)q->desc;
  C64(0x28) = (uint64_t)(uintptr_t)q->avail;
  C64(0x30) = (uint64_t)(uintptr_t)q->used;
  C16(0x1c) = 1; /* queue_enable */
}

static void setup(uint32_t dev) {
  dev_id = dev;
  cfg_write(dev, 0x04, 0);
  int bar = -1;
  uint32_t off[5] = {0}, mult = 0;
  uint8_t cap = cfg_read8(dev, 0x34) & 0xfc;
  for (int n = 0; cap && n < 48; ++n) {
    if (cfg_read8(dev, cap) == 0x09) {
      uint8_t type = cfg_read8(dev, cap + 3u);
      uint8_t b = cfg_read8(dev, cap + 4u);
      if (type >= 1 && type <= 4) {
        if (bar >= 0 && b != bar) guest_fail("virtio structures in two BARs (%d, %u)", bar, b);
        bar = b;
        off[type] = cfg_read(dev, cap + 8u);
        if (type == 2) mult = cfg_read(dev, cap + 16u);
      }
    }
    cap = cfg_read8(dev, cap + 1u) & 0xfc;
  }
  if (bar < 0 || bar > 5) guest_fail("no virtio capabilities");
  assign_bar(dev, bar, PCI_WINDOW);
  cfg_write(dev, 0x04, 0x6); /* memory space + bus master */
  common = phys(PCI_WINDOW + off[1]);
  devcfg = phys(PCI_WINDOW + off[4]);
  volatile uint8_t* notify = phys(PCI_WINDOW + off[2]);

  /* §3.1.1 driver initialisation. */
  C8(0x14) = 0;
  while (C8(0x14) != 0) cpu_relax();
  C8(0x14) = 1;
  C8(0x14) = 1 | 2;
  C32(0x00) = 0;
  uint32_t f_lo = C32(0x04);
  C32(0x00) = 1;
  uint32_t f_hi = C32(0x04);
  printf("NET_FEATURES=%x\n", f_lo);
  if (!(f_hi & 1)) guest_fail("device does not offer VERSION_1");
  if (!(f_lo & (1u << 5))) guest_fail("device does not offer VIRTIO_NET_F_MAC");
  uint32_t want_lo = (1u << 5) | (f_lo & (1u << 16)); /* MAC, STATUS if offered */
  C32(0x08) = 0;
  C32(0x0c) = want_lo;
  C32(0x08) = 1;
  C32(0x0c) = 1; /* VERSION_1 */
  C8(0x14) = 1 | 2 | 8;
  if (!(C8(0x14) & 8)) guest_fail("device refused FEATURES_OK");
  /* §5.1.4: mac[6], le16 status, le16 max_virtqueue_pairs. */
  for (int i = 0; i < 6; ++i) mac[i] = devcfg[i];
  printf("NET_MAC=%02x:%02x:%02x:%02x:%02x:%02x\n", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
  if (f_lo & (1u << 22)) printf("NET_MAX_PAIRS=%u\n", *(volatile uint16_t*)(devcfg + 8));
  if (f_lo & (1u << 16)) printf("NET_LINK=%u\n", *(volatile uint16_t*)(devcfg + 6) & 1u);
  C16(0x10) = 0xffff; /* no config-change vector */
  setup_queue(&rxq, 0, notify, mult);
  setup_queue(&txq, 1, notify, mult);
  C8(0x14) = 1 | 2 | 8 | 4; /* DRIVER_OK */
  if (C8(0x14) & 0x40) guest_fail("device needs reset after DRIVER_OK");
}

static void post(struct vq* q, uint16_t id) {
  q->avail[2 + q->next_avail % QSIZE] = id;
  barrier();
  q->avail[1] = ++q->next_avail;
  barrier();
}

/* Waits for the next used element; returns its id, *len its length. */
static uint16_t wait_used(struct vq* q, uint32_t* len, const char* what) {
  volatile uint16_t* used_idx = (volatile uint16_t*)(q->used + 2);
  uint64_t start = rdtsc();
  while (*used_idx == q->last_used) {
    cpu_relax();
    if (rdtsc() - start > 60ull * 1000 * 1000 * 1000)
      guest_fail("%s: no used buffer (status 0x%x)", what, C8(0x14));
  }
  barrier();
  volatile uint32_t* e = (volatile uint32_t*)(q->used + 4 + 8 * (q->last_used % QSIZE));
  ++q->last_used;
  if (e[0] >= QSIZE) guest_fail("%s: used id %u out of range", what, e[0]);
  *len = e[1];
  return (uint16_t)e[0];
}

static uint32_t frame_len(uint32_t i) {
  return 60 + (i * 97) % 1455;
}
static uint8_t pat(uint32_t i, uint64_t seed, uint32_t k) {
  return (uint8_t)(i * 31 + seed + k);
}

int guest_main(void) {
  map_pci_window();
  uint64_t frames = cmdline_u64("frames", 32);
  uint64_t seed = cmdline_u64("seed", 1);
  if (frames == 0 || frames > 4096)
    guest_fail("frames=%llu out of range", (unsigned long long)frames);
  int found = 0;
  for (uint32_t dev = 0; dev < 32; ++dev) {
    uint32_t id = cfg_read(dev, 0);
    if ((id & 0xffff) == 0xffff) continue;
    printf("PCI=%02x:%04x:%04x\n", dev, id & 0xffff, id >> 16);
    if (id == 0x10411af4 && !found) {
      setup(dev);
      found = 1;
    }
  }
  if (!found) guest_fail("no virtio-net (1af4:1041) on bus 0");

  /* All rx buffers posted up front, one descriptor each. */
  for (uint16_t i = 0; i < QSIZE; ++i) {
    rxq.desc[i].addr = (uint64_t)(uintptr_t)rx_buf[i];
    rxq.desc[i].len = BUF;
    rxq.desc[i].flags = 2; /* WRITE */
    rxq.desc[i].next = 0;
    post(&rxq, i);
  }
  *rxq.notify = 0;

  /* 1. transmit, one frame in flight (descriptor 0). */
  uint64_t tx_bytes = 0;
  for (uint32_t i = 0; i < frames; ++i) {
    uint32_t n = frame_len(i);
    memset(tx_buf, 0, HDR);
    uint8_t* f = tx_buf + HDR;
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    f[12] = ETYPE_TX >> 8;
    f[13] = ETYPE_TX & 0xff;
    memcpy(f + 14, "SKNT", 4);
    memcpy(f + 18, &i, 4);
    for (uint32_t k = 22; k < n; ++k) f[k] = pat(i, seed, k);
    txq.desc[0].addr = (uint64_t)(uintptr_t)tx_buf;
    txq.desc[0].len = HDR + n;
    txq.desc[0].flags = 0;
    post(&txq, 0);
    *txq.notify = 1;
    uint32_t len;
    if (wait_used(&txq, &len, "tx") != 0) guest_fail("tx: wrong used id");
    tx_bytes += n;
  }
  printf("TX_FRAMES=%u\nTX_BYTES=%llu\n", (unsigned)frames, (unsigned long long)tx_bytes);

  /* 2. receive and check; other traffic is skipped. */
  uint32_t got = 0, other = 0;
  uint64_t rx_bytes = 0;
  while (got < frames) {
    uint32_t len;
    uint16_t id = wait_used(&rxq, &len, "rx");
    const uint8_t* f = rx_buf[id] + HDR;
    if (len < HDR + 14 || len > BUF) guest_fail("rx: used length %u", len);
    uint32_t n = len - HDR;
    uint16_t etype = (uint16_t)(f[12] << 8 | f[13]);
    if (etype != ETYPE_RX) {
      ++other;
    } else {
      uint32_t seq;
      memcpy(&seq, f + 18, 4);
      if (seq != got) guest_fail("rx: frame %u has sequence %u", got, seq);
      if (n != frame_len(seq))
        guest_fail("rx: frame %u is %u bytes, want %u", seq, n, frame_len(seq));
      if (memcmp(f, mac, 6) != 0) guest_fail("rx: frame %u not addressed to our MAC", seq);
      if (memcmp(f + 14, "SKNT", 4) != 0) guest_fail("rx: frame %u has no SKNT tag", seq);
      for (uint32_t k = 22; k < n; ++k)
        if (f[k] != pat(seq, seed, k))
          guest_fail("rx: frame %u byte %u is 0x%x, want 0x%x", seq, k, f[k], pat(seq, seed, k));
      ++got;
      rx_bytes += n;
    }
    post(&rxq, id); /* the buffer goes back */
    *rxq.notify = 0;
  }
  printf("RX_FRAMES=%u\nRX_BYTES=%llu\nRX_OTHER=%u\n", got, (unsigned long long)rx_bytes, other);
  puts_line("NET_DONE");
  return 0x10;
}

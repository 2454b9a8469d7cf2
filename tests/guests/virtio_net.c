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
 * PCI and virtqueue plumbing: runtime/virtio_pci.c.
 * Exit 0x10 on success; guest_fail (0x7e) on any protocol problem. */
#include "runtime.h"
#include "virtio_pci.h"

const char guest_name[] = "virtio_net";

#define QSIZE 16
#define BUF 2048 /* 12-byte header + a 1514-byte frame fit */
#define HDR 12
#define ETYPE_TX 0x88b5
#define ETYPE_RX 0x88b6

static struct virtio_pci vdev;
static struct virtq rxq, txq;
static uint8_t ring_mem[2][VIRTQ_RING_BYTES] __attribute__((aligned(4096)));
static uint8_t rx_buf[QSIZE][BUF] __attribute__((aligned(4096)));
static uint8_t tx_buf[BUF] __attribute__((aligned(4096)));
static uint8_t mac[6];

static void setup(uint32_t dev) {
  virtio_pci_map(&vdev, dev, PCI_WINDOW, 0x100000);
  volatile uint8_t* devcfg = vdev.device_cfg;
  uint32_t f_lo = virtio_pci_begin(&vdev);
  printf("NET_FEATURES=%x\n", f_lo);
  if (!(f_lo & (1u << 5))) guest_fail("device does not offer VIRTIO_NET_F_MAC");
  uint32_t want_lo = (1u << 5) | (f_lo & (1u << 16)); /* MAC, STATUS if offered */
  virtio_pci_features_ok(&vdev, want_lo);
  /* §5.1.4: mac[6], le16 status, le16 max_virtqueue_pairs. */
  for (int i = 0; i < 6; ++i) mac[i] = devcfg[i];
  printf("NET_MAC=%02x:%02x:%02x:%02x:%02x:%02x\n", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
  if (f_lo & (1u << 22)) printf("NET_MAX_PAIRS=%u\n", *(volatile uint16_t*)(devcfg + 8));
  if (f_lo & (1u << 16)) printf("NET_LINK=%u\n", *(volatile uint16_t*)(devcfg + 6) & 1u);
  virtq_setup(&vdev, &rxq, 0, QSIZE, ring_mem[0], 0xffff);
  virtq_setup(&vdev, &txq, 1, QSIZE, ring_mem[1], 0xffff);
  virtio_pci_driver_ok(&vdev);
}

/* Waits for the next used element; returns its id, *len its length. */
static uint16_t wait_used(struct virtq* q, uint32_t* len, const char* what) {
  uint32_t id;
  uint64_t start = rdtsc();
  while (!virtq_used(q, &id, len)) {
    cpu_relax();
    if (rdtsc() - start > 60ull * 1000 * 1000 * 1000)
      guest_fail("%s: no used buffer (status 0x%x)", what, virtio_pci_status(&vdev));
  }
  if (id >= QSIZE) guest_fail("%s: used id %u out of range", what, id);
  return (uint16_t)id;
}

static uint32_t frame_len(uint32_t i) {
  return 60 + (i * 97) % 1455;
}
static uint8_t pat(uint32_t i, uint64_t seed, uint32_t k) {
  return (uint8_t)(i * 31 + seed + k);
}

int guest_main(void) {
  pci_map_window();
  uint64_t frames = cmdline_u64("frames", 32);
  uint64_t seed = cmdline_u64("seed", 1);
  if (frames == 0 || frames > 4096)
    guest_fail("frames=%llu out of range", (unsigned long long)frames);
  int found = 0;
  for (uint32_t dev = 0; dev < 32; ++dev) {
    uint32_t id = pci_cfg_read(dev, 0);
    if ((id & 0xffff) == 0xffff) continue;
    printf("PCI=%02x:%04x:%04x\n", dev, id & 0xffff, id >> 16);
    if (id == VIRTIO_PCI_ID(1) && !found) {
      setup(dev);
      found = 1;
    }
  }
  if (!found) guest_fail("no virtio-net (1af4:1041) on bus 0");

  /* All rx buffers posted up front, one descriptor each. */
  for (uint16_t i = 0; i < QSIZE; ++i) {
    virtq_set_desc(&rxq, i, (uint64_t)(uintptr_t)rx_buf[i], BUF, VIRTQ_DESC_F_WRITE);
    virtq_add(&rxq, i);
    virtq_publish(&rxq);
  }
  virtq_notify(&rxq);

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
    virtq_set_desc(&txq, 0, (uint64_t)(uintptr_t)tx_buf, HDR + n, 0);
    virtq_post(&txq, 0);
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
    virtq_post(&rxq, id); /* the buffer goes back */
  }
  printf("RX_FRAMES=%u\nRX_BYTES=%llu\nRX_OTHER=%u\n", got, (unsigned long long)rx_bytes, other);
  puts_line("NET_DONE");
  return 0x10;
}

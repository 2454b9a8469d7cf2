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
 * PCI and virtqueue plumbing: runtime/virtio_pci.c.
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
#include "virtio_pci.h"

const char guest_name[] = "virtio_console";

#define QSIZE 8
#define RXBUF 64

static struct virtio_pci vdev;
static struct virtq queues[2]; /* receiveq, transmitq of port 0 */
static uint8_t ring_mem[2][VIRTQ_RING_BYTES] __attribute__((aligned(4096)));
static uint8_t rx_bufs[QSIZE][RXBUF] __attribute__((aligned(64)));
static uint8_t tx_buf[256] __attribute__((aligned(64)));

/* Descriptor `i` holds one buffer; make it available. */
static void post(uint16_t q, uint16_t i, uint64_t addr, uint32_t len, int writable) {
  virtq_set_desc(&queues[q], i, addr, len, writable ? VIRTQ_DESC_F_WRITE : 0);
  virtq_post(&queues[q], i);
}

/* Waits up to `secs` seconds (TSC ticks at >= 1 GHz here) for a used
 * element; returns 0 on timeout. */
static int wait_used(uint16_t q, uint32_t* id, uint32_t* len, uint64_t secs) {
  uint64_t start = rdtsc();
  while (!virtq_used(&queues[q], id, len)) {
    cpu_relax();
    if (virtio_pci_status(&vdev) & VSTATUS_NEEDS_RESET)
      guest_fail("device needs reset (queue %u)", q);
    if (rdtsc() - start > secs * 1000ull * 1000 * 1000) return 0;
  }
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
  virtio_pci_map(&vdev, dev, PCI_WINDOW, 0x100000);
  uint32_t features = virtio_pci_begin(&vdev);
  printf("CONSOLE_FEATURES=%x\n", features);
  uint32_t accept = features & (1u << 2); /* EMERG_WRITE only; never SIZE or MULTIPORT */
  virtio_pci_features_ok(&vdev, accept);
  uint16_t nq = VCOMMON16(&vdev, VCOMMON_NUM_QUEUES);
  if (nq < 2) guest_fail("num_queues %u < 2", nq);
  for (uint16_t q = 0; q < 2; ++q) virtq_setup(&vdev, &queues[q], q, QSIZE, ring_mem[q], 0xffff);
  virtio_pci_driver_ok(&vdev);
  printf("CONSOLE_MAX_PORTS=%u\n", *(volatile uint32_t*)(vdev.device_cfg + 4));
  return accept;
}

int guest_main(void) {
  pci_map_window();
  int slot = pci_find(VIRTIO_PCI_ID(3));
  if (slot < 0) guest_fail("no virtio-console (1af4:1043) on bus 0");
  printf("CONSOLE_PCI=%02x\n", (unsigned)slot);
  uint32_t accepted = setup_device((uint32_t)slot);

  /* Receive buffers first, so input can arrive while we transmit. */
  for (uint16_t i = 0; i < QSIZE; ++i) post(0, i, (uint64_t)(uintptr_t)rx_bufs[i], RXBUF, 1);

  transmit("hello from hvc0\n");
  puts_line("CONSOLE_TX=ok");
  if (accepted & (1u << 2)) {
    for (const char* p = "EMERG=ok\n"; *p; ++p)
      *(volatile uint32_t*)(vdev.device_cfg + 8) = (uint8_t)*p;
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
    virtio_pci_reset(&vdev);
    puts_line("CONSOLE_RESET=ok");
  }
  puts_line("VIRTIO_CONSOLE_DONE");
  return 0x10;
}

/* A minimal virtio 1.x PCI driver core for the test guests (virtio_pci.c):
 * what virtio_blk.c, virtio_console.c, virtio_net.c and virtio_balloon.c
 * share, so each of them keeps only its device logic.
 *
 * PCI configuration mechanism #1 (0xcf8/0xcfc, dword accesses only) on bus
 * 0; the virtio vendor capabilities (virtio 1.2 §4.1.4); the virtio BAR
 * moved into the 32-bit PCI window both VMMs decode as PCI memory
 * ([0xc0000000, 0xe0000000)), whose first 2 MiB pci_map_window() maps
 * uncached; the §3.1.1 initialisation handshake; split virtqueues (§2.7)
 * driven by polling at CPL 3. No interrupts unless a guest sets up MSI-X
 * itself (virtio_blk.c does, with virtio_pci.msix_cap).
 *
 * Every failure is guest_fail() (ERROR=..., exit 0x7e): a test guest has
 * nothing to fall back to. */
#pragma once

#include "runtime.h"

#define PCI_WINDOW 0xc0000000ull
#define VIRTIO_VENDOR 0x1af4u
/* Config space dword 0 of a modern virtio function: device 0x1040 + type. */
#define VIRTIO_PCI_ID(type) ((0x1040u + (type)) << 16 | VIRTIO_VENDOR)

static inline void mem_barrier(void) {
  __asm__ volatile("mfence" ::: "memory");
}

/* ---- PCI configuration space, bus 0 (mechanism #1) ---- */
uint32_t pci_cfg_read(uint32_t dev, uint32_t reg);
void pci_cfg_write(uint32_t dev, uint32_t reg, uint32_t v);
uint8_t pci_cfg_read8(uint32_t dev, uint32_t reg);
/* The first slot on bus 0 whose dword 0 is `id` (device << 16 | vendor), or
 * -1. */
int pci_find(uint32_t id);
/* Sizes memory BAR `bar` of `dev` and places it at addr (a 64-bit BAR's
 * upper half becomes 0); fails if it is an I/O BAR or larger than max.
 * Returns its size. */
uint64_t pci_assign_bar(uint32_t dev, int bar, uint64_t addr, uint64_t max);
/* Maps [PCI_WINDOW, +2 MiB) uncached (PWT|PCD) into the guest's page
 * tables, user-accessible. */
void pci_map_window(void);

/* ---- one virtio-pci function ---- */
struct virtio_pci {
  uint32_t dev;     /* slot on bus 0 */
  int bar;          /* the BAR holding all virtio structures */
  uint64_t base;    /* where it was placed */
  uint8_t msix_cap; /* config offset of the MSI-X capability, 0: none */
  volatile uint8_t* common;
  volatile uint8_t* device_cfg;
  volatile uint8_t* isr;
  volatile uint8_t* notify;
  uint32_t notify_mult;
};

/* struct virtio_pci_common_cfg (§4.1.4.3) offsets. */
#define VCOMMON_DFSELECT 0x00
#define VCOMMON_DF 0x04
#define VCOMMON_GFSELECT 0x08
#define VCOMMON_GF 0x0c
#define VCOMMON_MSIX_CONFIG 0x10
#define VCOMMON_NUM_QUEUES 0x12
#define VCOMMON_STATUS 0x14
#define VCOMMON_Q_SELECT 0x16
#define VCOMMON_Q_SIZE 0x18
#define VCOMMON_Q_MSIX 0x1a
#define VCOMMON_Q_ENABLE 0x1c
#define VCOMMON_Q_NOFF 0x1e
#define VCOMMON_Q_DESC 0x20
#define VCOMMON_Q_DRIVER 0x28
#define VCOMMON_Q_DEVICE 0x30

/* Device status bits (§2.1). */
#define VSTATUS_ACKNOWLEDGE 1
#define VSTATUS_DRIVER 2
#define VSTATUS_DRIVER_OK 4
#define VSTATUS_FEATURES_OK 8
#define VSTATUS_NEEDS_RESET 0x40

#define VCOMMON8(v, o) (*(volatile uint8_t*)((v)->common + (o)))
#define VCOMMON16(v, o) (*(volatile uint16_t*)((v)->common + (o)))
#define VCOMMON32(v, o) (*(volatile uint32_t*)((v)->common + (o)))
#define VCOMMON64(v, o) (*(volatile uint64_t*)((v)->common + (o)))

/* Turns decode off, walks the capabilities (common, notify, ISR, device
 * config must share one BAR), places that BAR at `base` (at most bar_max
 * bytes) and turns memory decode and bus mastering on. */
void virtio_pci_map(struct virtio_pci* v, uint32_t dev, uint64_t base, uint64_t bar_max);
/* §3.1.1 steps 1-3: reset (and wait for it), ACKNOWLEDGE, DRIVER. Fails
 * unless VERSION_1 is offered; returns device feature bits 0-31. */
uint32_t virtio_pci_begin(struct virtio_pci* v);
/* §3.1.1 steps 4-6: driver features = accept_lo | VERSION_1, FEATURES_OK
 * (fails if the device refuses), and no config-change MSI-X vector. */
void virtio_pci_features_ok(struct virtio_pci* v, uint32_t accept_lo);
/* §3.1.1 step 8: DRIVER_OK; fails if the device then needs a reset. */
void virtio_pci_driver_ok(struct virtio_pci* v);
/* Writes 0 to device status and waits until it reads 0 (§2.4). */
void virtio_pci_reset(struct virtio_pci* v);
static inline uint8_t virtio_pci_status(const struct virtio_pci* v) {
  return VCOMMON8(v, VCOMMON_STATUS);
}

/* ---- split virtqueues (§2.7) ---- */
struct virtq_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2

/* Ring memory a queue needs: descriptors and the available ring in the
 * first page, the used ring in the second. 4 KiB aligned. */
#define VIRTQ_RING_BYTES (2 * 4096)
#define VIRTQ_MAX_SIZE 128

struct virtq {
  volatile struct virtq_desc* desc;
  volatile uint16_t* avail; /* flags, idx, ring[size] */
  volatile uint8_t* used;   /* le16 flags, le16 idx, {le32 id, le32 len}[size] */
  volatile uint16_t* notify;
  uint16_t index, size;
  uint16_t next_avail, last_used;
};

/* Sets up queue `index` with `size` entries (the device must offer at
 * least that many; at most VIRTQ_MAX_SIZE) in `mem` (VIRTQ_RING_BYTES,
 * zeroed here), MSI-X table entry `msix_entry` (0xffff: none; the device
 * must accept it, §4.1.5.1.2), and enables it. */
void virtq_setup(struct virtio_pci* v, struct virtq* q, uint16_t index, uint16_t size, void* mem,
                 uint16_t msix_entry);
/* Puts head `id` in the available ring without publishing it. */
static inline void virtq_add(struct virtq* q, uint16_t id) {
  q->avail[2 + q->next_avail % q->size] = id;
  ++q->next_avail;
}
/* Publishes what virtq_add() put in the available ring (§2.7.13). */
static inline void virtq_publish(struct virtq* q) {
  mem_barrier();
  q->avail[1] = q->next_avail;
  mem_barrier();
}
/* Notifies the device of queue q (§4.1.4.4). */
static inline void virtq_notify(struct virtq* q) {
  *q->notify = q->index;
}
/* virtq_add + virtq_publish + virtq_notify. */
static inline void virtq_post(struct virtq* q, uint16_t id) {
  virtq_add(q, id);
  virtq_publish(q);
  virtq_notify(q);
}
/* Fills descriptor i with one buffer (no NEXT). */
static inline void virtq_set_desc(struct virtq* q, uint16_t i, uint64_t addr, uint32_t len,
                                  uint16_t flags) {
  q->desc[i].addr = addr;
  q->desc[i].len = len;
  q->desc[i].flags = flags;
  q->desc[i].next = 0;
}
/* Non-blocking: if the device used a buffer since the last call, stores
 * its head and length and returns 1. */
int virtq_used(struct virtq* q, uint32_t* id, uint32_t* len);

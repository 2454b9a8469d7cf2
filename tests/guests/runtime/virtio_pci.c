/* The test guests' virtio-pci driver core (see virtio_pci.h). */
#include "virtio_pci.h"

static inline uint32_t inl(uint16_t port) {
  uint32_t v;
  __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

/* ---- PCI configuration mechanism #1 (PCI 3.0 §3.2.2.3.2) ---- */
uint32_t pci_cfg_read(uint32_t dev, uint32_t reg) {
  outl(0xcf8, 0x80000000u | dev << 11 | (reg & 0xfc));
  return inl(0xcfc);
}

void pci_cfg_write(uint32_t dev, uint32_t reg, uint32_t v) {
  outl(0xcf8, 0x80000000u | dev << 11 | (reg & 0xfc));
  outl(0xcfc, v);
}

uint8_t pci_cfg_read8(uint32_t dev, uint32_t reg) {
  return (uint8_t)(pci_cfg_read(dev, reg) >> ((reg & 3) * 8));
}

int pci_find(uint32_t id) {
  for (uint32_t dev = 0; dev < 32; ++dev)
    if (pci_cfg_read(dev, 0) == id) return (int)dev;
  return -1;
}

uint64_t pci_assign_bar(uint32_t dev, int bar, uint64_t addr, uint64_t max) {
  uint32_t reg = 0x10 + 4u * (uint32_t)bar;
  uint32_t orig = pci_cfg_read(dev, reg);
  if (orig & 1) guest_fail("BAR %d of device %u is an I/O BAR", bar, dev);
  pci_cfg_write(dev, reg, 0xffffffffu);
  uint64_t size = (uint64_t)(~(pci_cfg_read(dev, reg) & ~0xfu)) + 1;
  if (size > max)
    guest_fail("BAR %d of device %u too large (0x%llx)", bar, dev, (unsigned long long)size);
  pci_cfg_write(dev, reg, (uint32_t)addr);
  if ((orig & 0x6) == 0x4) pci_cfg_write(dev, reg + 4, 0);
  return size;
}

/* ---- the 2 MiB of the PCI window the guests use, mapped uncached ---- */
extern uint64_t pml4[512];
static uint64_t invlpg_window(uint64_t va) {
  __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory");
  return 0;
}

void pci_map_window(void) {
  /* pml4[0] -> pdpt; pdpt[3] -> the PD of 3..4 GiB (runtime boot.S). The
   * tables are in identity-mapped, user-writable memory. */
  uint64_t* pdpt = phys(pml4[0] & ~0xfffull);
  uint64_t* pd = phys(pdpt[3] & ~0xfffull);
  /* P | W | U | PWT | PCD | PS */
  pd[0] = PCI_WINDOW | 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x80;
  kernel_call(invlpg_window, PCI_WINDOW);
}

/* ---- virtio-pci (virtio 1.2 §4.1) ---- */
void virtio_pci_map(struct virtio_pci* v, uint32_t dev, uint64_t base, uint64_t bar_max) {
  v->dev = dev;
  /* Decode off while the BAR moves. */
  pci_cfg_write(dev, 0x04, 0);
  int bar = -1;
  uint32_t off[5] = {0}, mult = 0;
  uint8_t msix_cap = 0;
  /* §4.1.4: struct virtio_pci_cap, vendor capability 0x09: cfg_type at +3,
   * bar at +4, offset at +8; notify_off_multiplier at +16. At most 48
   * capabilities fit in config space: a loop means a broken list. */
  uint8_t cap = pci_cfg_read8(dev, 0x34) & 0xfc;
  for (int n = 0; cap && n < 48; ++n) {
    if (pci_cfg_read8(dev, cap) == 0x11) msix_cap = cap;
    if (pci_cfg_read8(dev, cap) == 0x09) {
      uint8_t type = pci_cfg_read8(dev, cap + 3u);
      uint8_t b = pci_cfg_read8(dev, cap + 4u);
      if (type >= 1 && type <= 4) {
        if (bar >= 0 && b != bar) guest_fail("virtio structures in two BARs (%d, %u)", bar, b);
        bar = b;
        off[type] = pci_cfg_read(dev, cap + 8u);
        if (type == 2) mult = pci_cfg_read(dev, cap + 16u);
      }
    }
    cap = pci_cfg_read8(dev, cap + 1u) & 0xfc;
  }
  if (bar < 0 || bar > 5) guest_fail("no virtio capabilities on device %u", dev);
  pci_assign_bar(dev, bar, base, bar_max);
  pci_cfg_write(dev, 0x04, 0x6); /* memory space + bus master */
  v->bar = bar;
  v->base = base;
  v->msix_cap = msix_cap;
  v->common = phys(base + off[1]);
  v->notify = phys(base + off[2]);
  v->isr = phys(base + off[3]);
  v->device_cfg = phys(base + off[4]);
  v->notify_mult = mult;
}

void virtio_pci_reset(struct virtio_pci* v) {
  VCOMMON8(v, VCOMMON_STATUS) = 0;
  while (VCOMMON8(v, VCOMMON_STATUS) != 0) cpu_relax();
}

uint32_t virtio_pci_begin(struct virtio_pci* v) {
  virtio_pci_reset(v);
  VCOMMON8(v, VCOMMON_STATUS) = VSTATUS_ACKNOWLEDGE;
  VCOMMON8(v, VCOMMON_STATUS) = VSTATUS_ACKNOWLEDGE | VSTATUS_DRIVER;
  VCOMMON32(v, VCOMMON_DFSELECT) = 0;
  uint32_t features = VCOMMON32(v, VCOMMON_DF);
  VCOMMON32(v, VCOMMON_DFSELECT) = 1;
  /* VIRTIO_F_VERSION_1 is bit 32 (§6): the modern interface. */
  if (!(VCOMMON32(v, VCOMMON_DF) & 1)) guest_fail("device %u does not offer VERSION_1", v->dev);
  return features;
}

void virtio_pci_features_ok(struct virtio_pci* v, uint32_t accept_lo) {
  VCOMMON32(v, VCOMMON_GFSELECT) = 0;
  VCOMMON32(v, VCOMMON_GF) = accept_lo;
  VCOMMON32(v, VCOMMON_GFSELECT) = 1;
  VCOMMON32(v, VCOMMON_GF) = 1; /* VERSION_1 */
  VCOMMON8(v, VCOMMON_STATUS) = VSTATUS_ACKNOWLEDGE | VSTATUS_DRIVER | VSTATUS_FEATURES_OK;
  if (!(VCOMMON8(v, VCOMMON_STATUS) & VSTATUS_FEATURES_OK))
    guest_fail("device %u refused FEATURES_OK", v->dev);
  VCOMMON16(v, VCOMMON_MSIX_CONFIG) = 0xffff; /* no config-change vector */
}

void virtio_pci_driver_ok(struct virtio_pci* v) {
  VCOMMON8(v, VCOMMON_STATUS) =
      VSTATUS_ACKNOWLEDGE | VSTATUS_DRIVER | VSTATUS_FEATURES_OK | VSTATUS_DRIVER_OK;
  if (VCOMMON8(v, VCOMMON_STATUS) & VSTATUS_NEEDS_RESET)
    guest_fail("device %u needs reset after DRIVER_OK", v->dev);
}

void virtq_setup(struct virtio_pci* v, struct virtq* q, uint16_t index, uint16_t size, void* mem,
                 uint16_t msix_entry) {
  if (size == 0 || size > VIRTQ_MAX_SIZE) guest_fail("queue size %u unsupported", size);
  VCOMMON16(v, VCOMMON_Q_SELECT) = index;
  uint16_t max = VCOMMON16(v, VCOMMON_Q_SIZE);
  if (max < size) guest_fail("queue %u of device %u has only %u entries", index, v->dev, max);
  VCOMMON16(v, VCOMMON_Q_SIZE) = size;
  VCOMMON16(v, VCOMMON_Q_MSIX) = msix_entry;
  if (VCOMMON16(v, VCOMMON_Q_MSIX) != msix_entry)
    guest_fail("device %u refused MSI-X vector %u", v->dev, msix_entry);
  /* §2.7: descriptors 16-byte aligned, available ring 2-byte aligned, used
   * ring 4-byte aligned. The available ring follows the descriptors (at
   * least 256 bytes in); the used ring has the second page. */
  uint8_t* m = mem;
  uint32_t avail_off = 16u * size > 256 ? 16u * size : 256;
  memset(m, 0, VIRTQ_RING_BYTES);
  q->desc = (volatile struct virtq_desc*)m;
  q->avail = (volatile uint16_t*)(m + avail_off);
  q->used = m + 4096;
  q->notify =
      (volatile uint16_t*)(v->notify + (uint32_t)VCOMMON16(v, VCOMMON_Q_NOFF) * v->notify_mult);
  q->index = index;
  q->size = size;
  q->next_avail = q->last_used = 0;
  VCOMMON64(v, VCOMMON_Q_DESC) = (uint64_t)(uintptr_t)q->desc;
  VCOMMON64(v, VCOMMON_Q_DRIVER) = (uint64_t)(uintptr_t)q->avail;
  VCOMMON64(v, VCOMMON_Q_DEVICE) = (uint64_t)(uintptr_t)q->used;
  VCOMMON16(v, VCOMMON_Q_ENABLE) = 1;
}

int virtq_used(struct virtq* q, uint32_t* id, uint32_t* len) {
  volatile uint16_t* used_idx = (volatile uint16_t*)(q->used + 2);
  if (*used_idx == q->last_used) return 0;
  mem_barrier();
  volatile uint32_t* e = (volatile uint32_t*)(q->used + 4 + 8 * (q->last_used % q->size));
  *id = e[0];
  *len = e[1];
  ++q->last_used;
  return 1;
}

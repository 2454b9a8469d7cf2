/* xAPIC at 0xfee00000 (Intel SDM vol. 3 §10.4), the MADT (ACPI 6.4
 * §5.2.12) and starting APs with INIT-SIPI-SIPI (SDM vol. 3 §8.4.4.1).
 * The BSP side runs at CPL 3 (the LAPIC page is mapped with U); the APs
 * enter through trampoline.S and reach ap_main() at CPL 0. */
#include "runtime.h"

enum {
  LAPIC_ID = 0x20,
  LAPIC_SVR = 0xf0,
  LAPIC_ICR_LO = 0x300,
  LAPIC_ICR_HI = 0x310,
  ICR_DELIVERY_PENDING = 1u << 12,
  ICR_LEVEL_ASSERT = 1u << 14,
  ICR_INIT = 5u << 8,
  ICR_STARTUP = 6u << 8,
};

volatile uint32_t ap_started;
volatile uint32_t ap_apic_ids[MAX_APS];
void ap_main(uint32_t slot);

uint32_t lapic_read(uint32_t reg) {
  return *(volatile uint32_t*)(uintptr_t)(LAPIC_BASE + reg);
}
void lapic_write(uint32_t reg, uint32_t v) {
  *(volatile uint32_t*)(uintptr_t)(LAPIC_BASE + reg) = v;
}
uint32_t lapic_id(void) {
  return lapic_read(LAPIC_ID) >> 24;
}

static uint64_t tsc_per_us;

/* CPUID 0x15 (crystal ratio), 0x16 (base MHz), then the hypervisor's TSC
 * leaf 0x40000010 (kHz); otherwise assume 3 GHz. Only timeouts depend on it. */
static uint64_t tsc_rate(void) {
  uint32_t r[4];
  cpuid(0, 0, r);
  uint32_t max = r[0];
  if (max >= 0x15) {
    cpuid(0x15, 0, r);
    if (r[0] && r[1] && r[2]) return (uint64_t)r[2] * r[1] / r[0] / 1000000;
  }
  if (max >= 0x16) {
    cpuid(0x16, 0, r);
    if (r[0]) return r[0];
  }
  cpuid(0x40000000, 0, r);
  if (r[0] >= 0x40000010) {
    cpuid(0x40000010, 0, r);
    if (r[0] >= 1000) return r[0] / 1000;
  }
  return 3000;
}

void delay_us(uint64_t us) {
  if (!tsc_per_us) tsc_per_us = tsc_rate();
  uint64_t end = rdtsc() + us * tsc_per_us;
  while (rdtsc() < end) cpu_relax();
}

uint32_t madt_cpus(uint32_t* ids, uint32_t max_ids) {
  const struct acpi_header* madt = acpi_find_table("APIC");
  if (!madt) guest_fail("no valid MADT (APIC) table");
  const uint8_t* p = (const uint8_t*)madt;
  uint32_t n = 0;
  /* 44 = header + local APIC address + flags; then (type, length) records. */
  for (uint32_t off = 44; off + 2 <= madt->length;) {
    uint8_t type = p[off], len = p[off + 1];
    if (len < 2 || off + len > madt->length) {
      printf("ACPI_ERROR=MADT entry at +%u has bad length %u\n", off, len);
      break;
    }
    uint32_t flags, id;
    if (type == 0 && len >= 8) { /* Processor Local APIC */
      memcpy(&flags, p + off + 4, 4);
      id = p[off + 3];
    } else if (type == 9 && len >= 16) { /* Processor Local x2APIC */
      memcpy(&id, p + off + 4, 4);
      memcpy(&flags, p + off + 8, 4);
    } else {
      off += len;
      continue;
    }
    if (flags & 1) { /* Enabled */
      if (n < max_ids) ids[n] = id;
      n++;
    }
    off += len;
  }
  return n;
}

extern const char trampoline_start[], trampoline_end[];

void smp_copy_trampoline(void) {
  memcpy(phys(TRAMPOLINE_ADDR), trampoline_start, (size_t)(trampoline_end - trampoline_start));
}

static void send_ipi(uint32_t apic_id, uint32_t icr_lo) {
  lapic_write(LAPIC_ICR_HI, apic_id << 24);
  lapic_write(LAPIC_ICR_LO, icr_lo);
  for (int i = 0; i < 100000 && (lapic_read(LAPIC_ICR_LO) & ICR_DELIVERY_PENDING); i++) cpu_relax();
}

void smp_start_ap(uint32_t apic_id) {
  /* Software-enable the local APIC (SVR bit 8, spurious vector 0xff). */
  lapic_write(LAPIC_SVR, lapic_read(LAPIC_SVR) | 0x1ff);
  send_ipi(apic_id, ICR_INIT | ICR_LEVEL_ASSERT);
  delay_us(10000);
  for (int i = 0; i < 2; i++) {
    send_ipi(apic_id, ICR_STARTUP | ICR_LEVEL_ASSERT | TRAMPOLINE_SIPI_VECTOR);
    delay_us(200);
  }
}

/* CPL 0 on the AP's own stack. The slot is unique (boot.S took it with
 * lock xadd); the ID is stored before the counter is bumped so the BSP
 * never reads a slot that is not filled yet. */
void ap_main(uint32_t slot) {
  ap_apic_ids[slot] = lapic_id();
  __atomic_fetch_add(&ap_started, 1, __ATOMIC_RELEASE);
  for (;;) __asm__ volatile("cli; hlt");
}

uint32_t smp_start_all(uint32_t* running) {
  uint32_t ids[MAX_CPUS];
  uint32_t cpus = madt_cpus(ids, MAX_CPUS);
  if (cpus > MAX_CPUS) guest_fail("MADT lists %u CPUs, the guest handles %u", cpus, MAX_CPUS);
  uint32_t bsp = lapic_id();
  smp_copy_trampoline();
  uint32_t want = 0;
  for (uint32_t i = 0; i < cpus; i++) {
    if (ids[i] == bsp) continue;
    smp_start_ap(ids[i]);
    want++;
  }
  /* When called from guest_main the wait runs at CPL 3, natively; TSC-bounded. */
  for (int i = 0; i < 2000 && __atomic_load_n(&ap_started, __ATOMIC_ACQUIRE) < want; i++)
    delay_us(1000);
  *running = __atomic_load_n(&ap_started, __ATOMIC_ACQUIRE) + 1;
  return cpus;
}

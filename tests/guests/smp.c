/* smp: counts the enabled CPUs in the MADT, starts every AP with
 * INIT-SIPI-SIPI, and waits (bounded, 2 s) for each to check in.
 *   CPUS=<MADT count> STARTED=<APs that checked in + the BSP> APICIDS=<BSP first, comma-separated>
 * Exit 0x10 if every CPU started, else 0x20. */
#include "runtime.h"

const char guest_name[] = "smp";

int guest_main(void) {
  uint32_t ids[MAX_CPUS];
  uint32_t cpus = madt_cpus(ids, MAX_CPUS);
  uint32_t bsp = lapic_id();
  if (cpus > MAX_CPUS) guest_fail("MADT lists %u CPUs, the guest handles %u", cpus, MAX_CPUS);
  smp_copy_trampoline();
  uint32_t want = 0;
  for (uint32_t i = 0; i < cpus; i++) {
    if (ids[i] == bsp) continue;
    smp_start_ap(ids[i]);
    want++;
  }
  /* The wait runs at CPL 3, natively; TSC-bounded. */
  for (int i = 0; i < 2000 && __atomic_load_n(&ap_started, __ATOMIC_ACQUIRE) < want; i++)
    delay_us(1000);
  uint32_t started = __atomic_load_n(&ap_started, __ATOMIC_ACQUIRE);
  printf("CPUS=%u STARTED=%u APICIDS=%u", cpus, started + 1, bsp);
  for (uint32_t i = 0; i < started && i < MAX_APS; i++) printf(",%u", ap_apic_ids[i]);
  printf("\n");
  return started + 1 == cpus ? 0x10 : 0x20;
}

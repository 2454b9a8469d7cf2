/* smp: counts the enabled CPUs in the MADT, starts every AP with
 * INIT-SIPI-SIPI, and waits (bounded, 2 s) for each to check in.
 *   CPUS=<MADT count> STARTED=<APs that checked in + the BSP> APICIDS=<BSP first, comma-separated>
 * Exit 0x10 if every CPU started, else 0x20. */
#include "runtime.h"

const char guest_name[] = "smp";

int guest_main(void) {
  uint32_t running;
  uint32_t cpus = smp_start_all(&running);
  printf("CPUS=%u STARTED=%u APICIDS=%u", cpus, running, lapic_id());
  for (uint32_t i = 0; i + 1 < running && i < MAX_APS; i++) printf(",%u", ap_apic_ids[i]);
  printf("\n");
  return running == cpus ? 0x10 : 0x20;
}

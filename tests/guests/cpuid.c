/* cpuid: what the VMM's CPUID says about this CPU (the BSP).
 *   MAXLEAF=<hex>                       leaf 0 EAX
 *   LEAF1_EBX=<hex> APICID=<n> LOGICAL=<n>  leaf 1 EBX[31:24], EBX[23:16]
 *   HV=<signature> HVMAXLEAF=<hex>      leaf 0x40000000 (HV=KVMKVMKVM under KVM;
 *                                       HV= empty if leaf 1 ECX bit 31 is clear)
 *   LEAF0B.<i>=type=<t> shift=<s> count=<c> x2apic=<id>  per level of leaf 0xB
 * Every CPUID here is executed at CPL 0 (kernel_call): on our nested-KVM
 * hosts CPL-3 code runs natively and a CPL-3 CPUID answers with the outer
 * VM's values (APIC ID of whichever host CPU ran it), not the table the
 * VMM under test gave KVM. CPUID3_APICID=<n> reports that CPL-3 view for
 * comparison; tests should not rely on it.
 * Exit 0x10. */
#include "runtime.h"

const char guest_name[] = "cpuid";

int guest_main(void) {
  uint32_t r[4];
  cpuid_cpl0(0, 0, r);
  uint32_t max = r[0];
  printf("MAXLEAF=%x\n", max);
  cpuid_cpl0(1, 0, r);
  bool hypervisor = r[2] & (1u << 31);
  printf("LEAF1_EBX=%x APICID=%u LOGICAL=%u\n", r[1], r[1] >> 24, (r[1] >> 16) & 0xff);

  char sig[13] = {0};
  uint32_t hv_max = 0;
  if (hypervisor) {
    cpuid_cpl0(0x40000000, 0, r);
    hv_max = r[0];
    memcpy(sig, &r[1], 4);
    memcpy(sig + 4, &r[2], 4);
    memcpy(sig + 8, &r[3], 4);
  }
  printf("HV=%s HVMAXLEAF=%x\n", sig, hv_max);

  if (max >= 0xb) {
    /* SDM vol. 2 CPUID leaf 0BH: levels until the level type (ECX[15:8]) is 0. */
    for (uint32_t i = 0; i < 8; i++) {
      cpuid_cpl0(0xb, i, r);
      uint32_t type = (r[2] >> 8) & 0xff;
      if (type == 0) break;
      printf("LEAF0B.%u=type=%u shift=%u count=%u x2apic=%u\n", i, type, r[0] & 0x1f, r[1] & 0xffff,
             r[3]);
    }
  }
  cpuid(1, 0, r);
  printf("CPUID3_APICID=%u\n", r[1] >> 24);
  return 0x10;
}

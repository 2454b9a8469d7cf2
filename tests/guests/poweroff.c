/* poweroff: ACPI S5 soft-off the way an OS does it (ACPI 6.4 §7.4.2.5 and
 * §16.1.7/§4.8.3.7):
 *  - SLP_TYP from the DSDT's \_S5_ package: the bytes "_S5_", PackageOp
 *    0x12, PkgLength, NumElements, then the first element (BytePrefix 0x0A
 *    + byte, ZeroOp 0x00 or OneOp 0x01);
 *  - HW-reduced ACPI (FADT flags bit 20): SLP_TYP<<2 | SLP_EN (1<<5) to the
 *    SLEEP_CONTROL_REG GAS; otherwise SLP_TYP<<10 | SLP_EN (1<<13) to
 *    PM1a_CNT (X_PM1a_CNT_BLK if set, else PM1a_CNT_BLK).
 * Prints "POWEROFF via=<sleep_control|pm1a> slp_typ=<n>" before the write.
 * If the VM is still running afterwards: exit 0x30. */
#include "runtime.h"

const char guest_name[] = "poweroff";

/* Decodes the first element of \_S5_; -1 if the AML is not what we expect. */
static int s5_slp_typ(const struct acpi_header* dsdt) {
  const uint8_t* p = (const uint8_t*)dsdt;
  uint32_t len = dsdt->length;
  for (uint32_t i = sizeof *dsdt; i + 4 < len; i++) {
    if (memcmp(p + i, "_S5_", 4) != 0) continue;
    uint32_t j = i + 4;
    if (j >= len || p[j] != 0x12) continue; /* PackageOp */
    j++;
    if (j >= len) return -1;
    j += 1u + (p[j] >> 6); /* PkgLength: bits 7:6 = count of extra bytes */
    j++;                   /* NumElements */
    if (j >= len) return -1;
    if (p[j] == 0x0a) return j + 1 < len ? p[j + 1] : -1; /* BytePrefix */
    if (p[j] == 0x00 || p[j] == 0x01) return p[j];        /* ZeroOp, OneOp */
    printf("ACPI_ERROR=\\_S5_ first element opcode 0x%x is not handled\n", p[j]);
    return -1;
  }
  return -1;
}

int guest_main(void) {
  const struct acpi_header* fadt = acpi_find_table("FACP");
  if (!fadt) guest_fail("no valid FADT (FACP) table");
  const struct acpi_header* dsdt = acpi_dsdt(fadt);
  if (!dsdt) guest_fail("no valid DSDT");
  int slp_typ = s5_slp_typ(dsdt);
  if (slp_typ < 0) guest_fail("no decodable \\_S5_ package in the DSDT");
  uint32_t flags = 0;
  acpi_u32(fadt, FADT_FLAGS, &flags);

  if (flags & FADT_FLAG_HW_REDUCED_ACPI) {
    struct acpi_gas g;
    if (!acpi_gas_at(fadt, FADT_SLEEP_CONTROL_REG, &g) || g.address == 0)
      guest_fail("HW-reduced FADT without SLEEP_CONTROL_REG");
    printf("POWEROFF via=sleep_control slp_typ=%d\n", slp_typ);
    if (!acpi_gas_write(&g, (uint32_t)((slp_typ & 7) << 2 | 1 << 5)))
      guest_fail("SLEEP_CONTROL_REG (space %u, address 0x%llx) is not writable", g.space_id,
                 (unsigned long long)g.address);
  } else {
    struct acpi_gas g = {0};
    uint32_t blk = 0;
    if (!acpi_gas_at(fadt, FADT_X_PM1A_CNT_BLK, &g) || g.address == 0) {
      if (!acpi_u32(fadt, FADT_PM1A_CNT_BLK, &blk) || blk == 0)
        guest_fail("FADT has no PM1a_CNT_BLK");
      g = (struct acpi_gas){.space_id = 1, .bit_width = 16, .address = blk};
    }
    printf("POWEROFF via=pm1a slp_typ=%d\n", slp_typ);
    if (!acpi_gas_write(&g, (uint32_t)((slp_typ & 7) << 10 | 1 << 13)))
      guest_fail("PM1a_CNT (space %u, address 0x%llx) is not writable", g.space_id,
                 (unsigned long long)g.address);
  }
  delay_us(1000000);
  puts_line("STILL RUNNING");
  return 0x30;
}

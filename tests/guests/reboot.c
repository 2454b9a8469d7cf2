/* reboot: a boot counter in CMOS NVRAM survives resets; the guest reboots
 * itself until the counter reaches 3, alternating reset methods.
 *   n = CMOS[index] + 1 (index 0x5f, or cmos_index=N from the command line);
 *   CMOS[index] = n; prints BOOT=<n>
 *   n < 3, odd:  REBOOT via=i8042, outb(0x64, 0xfe) (keyboard-controller pulse)
 *   n < 3, even: REBOOT via=acpi, FADT RESET_VALUE to RESET_REG (ACPI 6.4
 *                §4.8.3.6), or via=i8042 if the FADT has no reset register
 *   n >= 3:      exit 0x10 + n (capped at 0x7d)
 * The counter starts from whatever the CMOS holds: a fresh skiff VM has 0
 * there, so the run is BOOT=1, 2, 3 and exit 0x13. (Under QEMU use
 * cmos_index=0x5e: QEMU keeps the CPU count - 1 in 0x5f for SeaBIOS, which
 * hangs after a reset if that byte grew.) `reset_counter` on the
 * command line only zeroes the counter and exits 0x10. If a reset does not
 * happen within a second: REBOOT_FAILED and exit 0x40. */
#include "runtime.h"

const char guest_name[] = "reboot";

static void reset_i8042(void) {
  puts_line("REBOOT via=i8042");
  outb(0x64, 0xfe);
}

int guest_main(void) {
  uint64_t index = cmdline_u64("cmos_index", 0x5f);
  if (index < 0x0e || index > 0x7f)
    guest_fail("cmos_index=0x%llx is not a CMOS NVRAM byte", (unsigned long long)index);
  uint8_t idx = (uint8_t)index;
  if (cmdline_get("reset_counter", NULL, 0)) {
    cmos_write(idx, 0);
    puts_line("BOOT_COUNTER=0");
    return 0x10;
  }
  uint8_t n = (uint8_t)(cmos_read(idx) + 1u);
  cmos_write(idx, n);
  if (cmos_read(idx) != n)
    guest_fail("CMOS byte 0x%x does not keep what is written to it (no CMOS?)", idx);
  printf("BOOT=%u\n", n);
  if (n >= 3) return n < 0x6d ? 0x10 + n : 0x7d;

  if (n % 2 == 1) {
    reset_i8042();
  } else {
    const struct acpi_header* fadt = acpi_find_table("FACP");
    struct acpi_gas reg;
    uint8_t value;
    if (fadt && acpi_gas_at(fadt, FADT_RESET_REG, &reg) && reg.address != 0 &&
        acpi_u8(fadt, FADT_RESET_VALUE, &value)) {
      puts_line("REBOOT via=acpi");
      if (!acpi_gas_write(&reg, value))
        guest_fail("RESET_REG (space %u, address 0x%llx) is not writable", reg.space_id,
                   (unsigned long long)reg.address);
    } else {
      reset_i8042();
    }
  }
  delay_us(1000000);
  puts_line("REBOOT_FAILED");
  return 0x40;
}

/* bootinfo: prints what the loader handed over, for host tests to compare
 * with what they configured. Same source for PVH, Multiboot and bzImage.
 *   BOOTPROTO=pvh|multiboot|bzimage
 *   MEM=<start hex> <len hex> <type>        one per memory-map entry
 *   CMDLINE=<command line>                  (Multiboot loaders may prefix the kernel path)
 *   MODULE=<addr hex> <size> <fnv1a-64 hex> one per module/initrd
 * Exit 0x10. The module hash runs here, at CPL 3, at native speed. */
#include "runtime.h"

const char guest_name[] = "bootinfo";

int guest_main(void) {
  printf("BOOTPROTO=%s\n", boot_proto_name(boot_info.proto));
  for (uint32_t i = 0; i < boot_info.n_mem; i++)
    printf("MEM=%llx %llx %u\n", (unsigned long long)boot_info.mem[i].start,
           (unsigned long long)boot_info.mem[i].len, boot_info.mem[i].type);
  printf("CMDLINE=%s\n", boot_info.cmdline);
  for (uint32_t i = 0; i < boot_info.n_modules; i++) {
    const struct boot_module* m = &boot_info.modules[i];
    if (!phys_range_ok(m->addr, m->size))
      guest_fail("module %u at 0x%llx+0x%llx is outside guest RAM", i, (unsigned long long)m->addr,
                 (unsigned long long)m->size);
    printf("MODULE=%llx %llu %016llx\n", (unsigned long long)m->addr, (unsigned long long)m->size,
           (unsigned long long)fnv1a64(phys(m->addr), m->size));
  }
  return 0x10;
}

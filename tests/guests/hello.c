/* hello: the smallest guest that uses the runtime. Prints a fixed line and
 * exits with 0x10 (QEMU/skiff exit status 0x21 = 33). */
#include "runtime.h"

const char guest_name[] = "hello";

int guest_main(void) {
  puts_line("hello from guest");
  return 0x10;
}

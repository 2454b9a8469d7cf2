/* serial_echo: prints READY, then echoes every byte it reads from the UART
 * in upper case until it reads 'q'; prints DONE and exits 0x10. The 'q'
 * itself is not echoed. */
#include "runtime.h"

const char guest_name[] = "serial_echo";

int guest_main(void) {
  puts_line("READY");
  for (;;) {
    int c = serial_getc();
    if (c == 'q') break;
    if (c >= 'a' && c <= 'z') c -= 'a' - 'A';
    serial_putc((char)c);
  }
  puts_line("");
  puts_line("DONE");
  return 0x10;
}

/* CMOS/RTC index-data pair at 0x70/0x71 (MC146818). Bit 7 of the index
 * is the NMI mask on PCs; it is left clear. */
#include "runtime.h"

uint8_t cmos_read(uint8_t index) {
  outb(0x70, index & 0x7f);
  return inb(0x71);
}

void cmos_write(uint8_t index, uint8_t v) {
  outb(0x70, index & 0x7f);
  outb(0x71, v);
}

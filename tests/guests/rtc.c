/* rtc: reads the CMOS real-time clock (MC146818: registers 0-9, status A
 * bit 7 = update in progress, status B bit 2 = binary (else BCD), bit 1 =
 * 24-hour (else 12-hour with bit 7 of the hour = PM)). The century comes
 * from the CMOS byte the FADT names (ACPI 6.4 §5.2.9 CENTURY), else 20.
 *   RTC=YYYY-MM-DD HH:MM:SS
 *   EPOCH=<unix seconds, the RTC taken as UTC>
 * Exit 0x10; 0x20 if the clock never settles or reads nonsense. */
#include "runtime.h"

const char guest_name[] = "rtc";

struct rtc_time {
  uint8_t sec, min, hour, day, mon, year, century;
};

static void read_raw(struct rtc_time* t, uint8_t century_reg) {
  t->sec = cmos_read(0x00);
  t->min = cmos_read(0x02);
  t->hour = cmos_read(0x04);
  t->day = cmos_read(0x07);
  t->mon = cmos_read(0x08);
  t->year = cmos_read(0x09);
  t->century = century_reg ? cmos_read(century_reg) : 0x20;
}

static bool wait_not_updating(void) {
  for (int i = 0; i < 100000; i++)
    if (!(cmos_read(0x0a) & 0x80)) return true;
  return false;
}

static uint8_t from_bcd(uint8_t v) {
  return (uint8_t)((v >> 4) * 10 + (v & 0xf));
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

int guest_main(void) {
  uint8_t century_reg = 0;
  const struct acpi_header* fadt = acpi_find_table("FACP");
  if (fadt && !acpi_u8(fadt, FADT_CENTURY, &century_reg)) century_reg = 0;

  /* Read until two reads agree, each after UIP clears (the usual way to
   * avoid a torn read across an update). */
  struct rtc_time a, b;
  int tries = 0;
  do {
    if (!wait_not_updating()) {
      puts_line("RTC_ERROR=update-in-progress never clears");
      return 0x20;
    }
    read_raw(&a, century_reg);
    if (!wait_not_updating()) {
      puts_line("RTC_ERROR=update-in-progress never clears");
      return 0x20;
    }
    read_raw(&b, century_reg);
  } while (memcmp(&a, &b, sizeof a) != 0 && ++tries < 10);

  uint8_t status_b = cmos_read(0x0b);
  bool pm = !(status_b & 0x02) && (b.hour & 0x80);
  b.hour &= 0x7f;
  if (!(status_b & 0x04)) {
    b.sec = from_bcd(b.sec);
    b.min = from_bcd(b.min);
    b.hour = from_bcd(b.hour);
    b.day = from_bcd(b.day);
    b.mon = from_bcd(b.mon);
    b.year = from_bcd(b.year);
    b.century = from_bcd(b.century);
  }
  if (!(status_b & 0x02)) { /* 12-hour: 12 AM is 0, 12 PM is 12 */
    if (b.hour == 12) b.hour = 0;
    if (pm) b.hour = (uint8_t)(b.hour + 12);
  }
  unsigned year = b.century * 100u + b.year;
  printf("RTC=%04u-%02u-%02u %02u:%02u:%02u\n", year, b.mon, b.day, b.hour, b.min, b.sec);
  if (b.sec > 59 || b.min > 59 || b.hour > 23 || b.day < 1 || b.day > 31 || b.mon < 1 ||
      b.mon > 12) {
    puts_line("RTC_ERROR=field out of range");
    return 0x20;
  }
  int64_t epoch = days_from_civil(year, b.mon, b.day) * 86400 + b.hour * 3600 + b.min * 60 + b.sec;
  printf("EPOCH=%lld\n", (long long)epoch);
  return 0x10;
}

/* Serial console (16550 at 0x3f8, polled), printf, exit, and the few libc
 * functions GCC may call on its own (memset/memcpy for struct copies). */
#include "runtime.h"

enum {
  COM1 = 0x3f8,
  UART_DATA = 0,
  UART_IER = 1,
  UART_LCR = 3,
  UART_MCR = 4,
  UART_LSR = 5,
  LSR_DR = 0x01,   /* a received byte is waiting */
  LSR_THRE = 0x20, /* transmit holding register empty */
  DEBUG_EXIT_PORT = 0xf4,
};

void serial_init(void) {
  /* No interrupts, 8N1, DTR|RTS. The divisor is left alone: the VMM's UART
   * does not care and real baud rates do not matter here. FCR is not
   * touched: changing its FIFO-enable bit clears the receive FIFO, which
   * would drop input that arrived before the guest got here. */
  outb(COM1 + UART_IER, 0);
  outb(COM1 + UART_LCR, 0x03);
  outb(COM1 + UART_MCR, 0x03);
}

void serial_putc(char c) {
  /* Bounded: a VMM whose LSR never says THRE must not hang the guest. */
  for (int i = 0; i < 100000 && !(inb(COM1 + UART_LSR) & LSR_THRE); i++) cpu_relax();
  outb(COM1 + UART_DATA, (uint8_t)c);
}

int serial_getc(void) {
  while (!(inb(COM1 + UART_LSR) & LSR_DR)) cpu_relax();
  return inb(COM1 + UART_DATA);
}

void puts_line(const char* s) {
  while (*s) serial_putc(*s++);
  serial_putc('\n');
}

static int put_u64(uint64_t v, unsigned base, int width, char pad) {
  char buf[24];
  int n = 0;
  do {
    unsigned d = (unsigned)(v % base);
    buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
    v /= base;
  } while (v);
  int out = 0;
  for (; width > n; width--, out++) serial_putc(pad);
  while (n) serial_putc(buf[--n]), out++;
  return out;
}

/* %d %i %u %x %p %s %c %%, with l/ll/z length, width and 0 padding. */
int vprintf(const char* fmt, va_list ap) {
  int out = 0;
  for (const char* p = fmt; *p; p++) {
    if (*p != '%') {
      serial_putc(*p);
      out++;
      continue;
    }
    p++;
    char pad = ' ';
    int width = 0;
    if (*p == '0') pad = '0', p++;
    while (*p >= '0' && *p <= '9') width = width * 10 + (*p++ - '0');
    int longs = 0;
    while (*p == 'l' || *p == 'z') longs++, p++;
    switch (*p) {
      case 'd':
      case 'i': {
        int64_t v = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
        uint64_t mag = (uint64_t)v;
        if (v < 0) {
          serial_putc('-');
          out++;
          mag = 0 - mag;
          if (width) width--;
        }
        out += put_u64(mag, 10, width, pad);
        break;
      }
      case 'u':
      case 'x': {
        uint64_t v = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
        out += put_u64(v, *p == 'u' ? 10 : 16, width, pad);
        break;
      }
      case 'p':
        out += put_u64((uint64_t)(uintptr_t)va_arg(ap, void*), 16, width, pad);
        break;
      case 's': {
        const char* s = va_arg(ap, const char*);
        if (!s) s = "(null)";
        int n = (int)strlen(s);
        for (; width > n; width--, out++) serial_putc(' ');
        while (*s) serial_putc(*s++), out++;
        break;
      }
      case 'c':
        serial_putc((char)va_arg(ap, int));
        out++;
        break;
      case '%':
        serial_putc('%');
        out++;
        break;
      default: /* unknown conversion: show it rather than guess */
        serial_putc('%');
        if (!*p) return out + 1;
        serial_putc(*p);
        out += 2;
    }
  }
  return out;
}

int printf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vprintf(fmt, ap);
  va_end(ap);
  return n;
}

_Noreturn void guest_exit(uint8_t v) {
  outb(DEBUG_EXIT_PORT, v);
  /* No debug-exit device: stop here. hlt needs CPL 0; ring 3 spins. */
  if (current_cpl() == 0) {
    for (;;) __asm__ volatile("cli; hlt");
  }
  for (;;) cpu_relax();
}

_Noreturn void guest_fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("ERROR=");
  vprintf(fmt, ap);
  va_end(ap);
  serial_putc('\n');
  guest_exit(EXIT_GUEST_ERROR);
}

uint64_t fnv1a64(const void* p, uint64_t len) {
  const uint8_t* b = p;
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint64_t i = 0; i < len; i++) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

void* memset(void* d, int c, size_t n) {
  uint8_t* p = d;
  while (n--) *p++ = (uint8_t)c;
  return d;
}

void* memcpy(void* d, const void* s, size_t n) {
  uint8_t* dp = d;
  const uint8_t* sp = s;
  while (n--) *dp++ = *sp++;
  return d;
}

int memcmp(const void* a, const void* b, size_t n) {
  const uint8_t* x = a;
  const uint8_t* y = b;
  for (; n; n--, x++, y++)
    if (*x != *y) return *x < *y ? -1 : 1;
  return 0;
}

size_t strlen(const char* s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

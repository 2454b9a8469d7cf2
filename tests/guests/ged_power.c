/* ged_power: the guest side of an ACPI power-button press through a
 * Generic Event Device (ACPI 6.5 §5.6.9), without an ACPI interpreter.
 *
 * What the guest's OS would do, step by step: find the GED ("ACPI0013") in
 * the DSDT and its interrupt in _CRS (an Extended Interrupt descriptor,
 * §6.4.3.6: GSI, level/edge, polarity); route that GSI through the IOAPIC
 * the MADT says serves it; on the interrupt, read the event register the
 * way the GED's _EVT method does (read-to-clear) and find the power-button
 * bit; EOI. The register's place and the bit are VMM-specific (they live in
 * the _EVT AML, which this guest does not interpret), so they come from the
 * command line:
 *
 *   ged_io=PORT | ged_mmio=ADDR   the event register: an 8-bit I/O port
 *                                 (skiff: 0x608) or a 32-bit MMIO register
 *                                 (QEMU microvm: 0xfea00000)
 *   bit=N                         power-button bit (skiff 0, QEMU 1)
 *   gsi=N                         optional: the GSI the caller expects; the
 *                                 guest fails if _CRS says otherwise
 *   timeout_ms=N                  how long to wait for the press (20000)
 *   trigger=level|edge            optional: program the IOAPIC so instead
 *                                 of as _CRS says (the QEMU reference runs
 *                                 its pulsed GED as level too, to prove the
 *                                 remote-IRR checks skiff's level line gets)
 *
 * Output (KEY=VALUE lines), in order:
 *   GED_CRS_GSI=n GED_CRS_TRIGGER=level|edge GED_CRS_POLARITY=high|low
 *   GED_IOAPIC=0x... GED_PIN=n     the IOAPIC input the GSI arrives on
 *   GED_INITIAL=0x..               event register before the press (0)
 *   GED_READY                      routed, waiting: press the button now
 * then, after the wait and a 100 ms quiet period:
 *   GED_IRQS=n                     interrupts taken (1)
 *   GED_ISR=1                      the vector was in service in the LAPIC
 *   GED_EVENT=0x..                 first read in the handler (bit set)
 *   GED_EVENT_AGAIN=0x..           second read in the handler (0: cleared)
 *   GED_REMOTE_IRR=1 GED_REMOTE_IRR_AFTER_EOI=0   (level only) the IOAPIC
 *                                  held the line as level until the EOI and
 *                                  the line was low by then
 *   GED_PENDING_AFTER=0x..         register after the quiet period (0)
 *   GED_POWER_BUTTON_OK            every check passed; exit 0x10
 * Any failed check: ERROR=... and exit 0x7e.
 *
 * Interrupts are taken only inside wait_for_interrupt() (STI; HLT at
 * CPL 0); a periodic LAPIC timer wakes it so the waits are bounded. */
#include "runtime.h"

const char guest_name[] = "ged_power";

enum {
  GED_VECTOR = 0x60,
  TICK_VECTOR = 0x40,
  SPURIOUS_VECTOR = 0xff,
  TICK_MS = 10,
  QUIET_TICKS = 10,
  EXIT_PASS = 0x10,
  /* Intel SDM vol. 3 §10.4-10.5: xAPIC registers. */
  LAPIC_EOI = 0xb0,
  LAPIC_SVR = 0xf0,
  LAPIC_ISR = 0x100,
  LAPIC_LVT_TIMER = 0x320,
  LAPIC_LVT_LINT0 = 0x350,
  LAPIC_TIMER_INIT = 0x380,
  LAPIC_TIMER_DIV = 0x3e0,
  LVT_MASKED = 1u << 16,
  LVT_TIMER_PERIODIC = 1u << 17,
  /* 82093AA IOAPIC: IOREGSEL at +0, IOWIN at +0x10; version register 1
   * (bits 16-23: highest redirection entry); entry n at 0x10 + 2n. */
  IOAPIC_VER = 1,
  REDIR_LEVEL = 1u << 15,
  REDIR_REMOTE_IRR = 1u << 14,
  REDIR_ACTIVE_LOW = 1u << 13,
  REDIR_MASKED = 1u << 16,
};

/* ---- the GED's _CRS, found in the DSDT ---- */

struct ged_irq {
  uint32_t gsi;
  bool level, active_low;
};

/* AML PkgLength (ACPI 6.5 §20.2.4) at off: its value and encoded size. */
static bool pkg_length(const struct acpi_header* t, uint32_t off, uint32_t* len, uint32_t* size) {
  uint8_t b0;
  if (!acpi_u8(t, off, &b0)) return false;
  uint32_t follow = b0 >> 6;
  *size = 1 + follow;
  if (follow == 0) {
    *len = b0 & 0x3f;
    return true;
  }
  *len = b0 & 0x0f;
  for (uint32_t i = 0; i < follow; i++) {
    uint8_t b;
    if (!acpi_u8(t, off + 1 + i, &b)) return false;
    *len |= (uint32_t)b << (4 + 8 * i);
  }
  return true;
}

/* A Buffer's size term: ZeroOp, OneOp, BytePrefix, WordPrefix or
 * DWordPrefix constant (§20.2.3); *size gets its encoded length. */
static bool const_integer(const struct acpi_header* t, uint32_t off, uint32_t* v, uint32_t* size) {
  uint8_t op;
  if (!acpi_u8(t, off, &op)) return false;
  if (op == 0x00 || op == 0x01) {
    *v = op;
    *size = 1;
    return true;
  }
  uint32_t n = op == 0x0a ? 1 : op == 0x0b ? 2 : op == 0x0c ? 4 : 0;
  if (!n) return false;
  *v = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint8_t b;
    if (!acpi_u8(t, off + 1 + i, &b)) return false;
    *v |= (uint32_t)b << (8 * i);
  }
  *size = 1 + n;
  return true;
}

/* Not an AML interpreter: the GED's Name (_HID, "ACPI0013") is found by its
 * bytes, and the first Name (_CRS, Buffer) within the next 256 bytes (the
 * same Device, in skiff's and QEMU's DSDTs) is walked as a resource
 * template (§6.4) for its Extended Interrupt descriptor. */
static struct ged_irq find_ged_irq(void) {
  const struct acpi_header* fadt = acpi_find_table("FACP");
  if (!fadt) guest_fail("no valid FADT");
  const struct acpi_header* dsdt = acpi_dsdt(fadt);
  if (!dsdt) guest_fail("no valid DSDT");
  static const char hid[] =
      "\x08_HID\x0d"
      "ACPI0013";
  const uint8_t* d = (const uint8_t*)dsdt;
  uint32_t len = dsdt->length, at = 0;
  for (uint32_t i = sizeof(struct acpi_header); i + sizeof hid <= len && !at; i++)
    if (memcmp(d + i, hid, sizeof hid) == 0) at = i + (uint32_t)sizeof hid;
  if (!at) guest_fail("no GED (Name (_HID, \"ACPI0013\")) in the DSDT");
  uint32_t crs = 0;
  for (uint32_t i = at; i + 6 <= len && i < at + 256 && !crs; i++)
    if (memcmp(d + i, "\x08_CRS\x11", 6) == 0) crs = i + 6;
  if (!crs) guest_fail("no Name (_CRS, Buffer) after the GED's _HID");
  uint32_t pkg, pkg_size, buf_len, int_size;
  if (!pkg_length(dsdt, crs, &pkg, &pkg_size) ||
      !const_integer(dsdt, crs + pkg_size, &buf_len, &int_size))
    guest_fail("GED _CRS: unreadable Buffer header");
  uint32_t p = crs + pkg_size + int_size;
  uint32_t end = p + buf_len;
  if (end > len || end > crs + pkg) guest_fail("GED _CRS: buffer runs past its package");
  while (p < end) {
    uint8_t tag;
    if (!acpi_u8(dsdt, p, &tag)) break;
    if (tag == 0x79) break; /* End Tag (§6.4.2.9) */
    uint32_t item;
    if (tag & 0x80) { /* large item: tag, 16-bit length */
      uint8_t lo, hi;
      if (!acpi_u8(dsdt, p + 1, &lo) || !acpi_u8(dsdt, p + 2, &hi)) break;
      item = 3u + ((uint32_t)hi << 8 | lo);
    } else {
      item = 1u + (tag & 7u);
    }
    if (p + item > end) break;
    if (tag == 0x89 && item >= 3 + 6) {
      /* Extended Interrupt: flags (bit 1 edge, bit 2 active low), count, GSIs. */
      uint8_t flags, count;
      uint32_t gsi;
      if (acpi_u8(dsdt, p + 3, &flags) && acpi_u8(dsdt, p + 4, &count) && count >= 1 &&
          acpi_u32(dsdt, p + 5, &gsi))
        return (struct ged_irq){.gsi = gsi, .level = !(flags & 2), .active_low = flags & 4};
    }
    p += item;
  }
  guest_fail("GED _CRS has no Extended Interrupt descriptor");
}

/* ---- IOAPIC (MADT type 1, ACPI 6.5 §5.2.12.3) ---- */

static volatile uint32_t* ioapic;
static uint32_t ged_pin;

static uint32_t ioapic_read(uint32_t reg) {
  ioapic[0] = reg;
  return ioapic[4];
}
static void ioapic_write(uint32_t reg, uint32_t v) {
  ioapic[0] = reg;
  ioapic[4] = v;
}
static uint32_t redir_low(void) {
  return ioapic_read(0x10 + 2 * ged_pin);
}

static void find_ioapic(uint32_t gsi) {
  const struct acpi_header* madt = acpi_find_table("APIC");
  if (!madt) guest_fail("no valid MADT (APIC) table");
  for (uint32_t off = 44; off + 2 <= madt->length;) {
    uint8_t type, rlen;
    if (!acpi_u8(madt, off, &type) || !acpi_u8(madt, off + 1, &rlen) || rlen < 2) break;
    uint32_t addr, base;
    if (type == 1 && rlen >= 12 && acpi_u32(madt, off + 4, &addr) &&
        acpi_u32(madt, off + 8, &base) && gsi >= base) {
      if (!mmio_range_ok(addr, 0x20)) guest_fail("IOAPIC at 0x%x is outside the MMIO window", addr);
      ioapic = phys(addr);
      uint32_t pins = (ioapic_read(IOAPIC_VER) >> 16 & 0xff) + 1;
      if (gsi < base + pins) {
        ged_pin = gsi - base;
        printf("GED_IOAPIC=0x%x\nGED_PIN=%u\n", addr, ged_pin);
        return;
      }
    }
    off += rlen;
  }
  guest_fail("no IOAPIC in the MADT serves GSI %u", gsi);
}

/* ---- the event register ---- */

static uint16_t ged_port;
static uint64_t ged_mmio;

static uint32_t ged_read(void) {
  if (ged_mmio) return *(volatile uint32_t*)phys(ged_mmio);
  return inb(ged_port);
}

/* ---- interrupt handlers (CPL 0, interrupts off) ---- */

static bool level_triggered;
static volatile uint32_t ged_irqs, ticks;
static volatile uint32_t isr_in_handler, event_first, event_again, rirr_in_handler, rirr_after_eoi;

static void ged_interrupt(struct exception_frame* f) {
  (void)f;
  uint32_t n = ged_irqs + 1;
  ged_irqs = n;
  if (n == 1) {
    isr_in_handler = lapic_read(LAPIC_ISR + 0x10u * (GED_VECTOR / 32u)) >> (GED_VECTOR % 32u) & 1;
    event_first = ged_read(); /* what _EVT's read of the register returns */
    event_again = ged_read(); /* read-to-clear: nothing left */
    rirr_in_handler = redir_low() & REDIR_REMOTE_IRR ? 1 : 0;
  } else if (level_triggered) {
    /* The line did not drop: mask it, or it fires forever and the guest
     * never gets to report it. */
    ioapic_write(0x10 + 2 * ged_pin, redir_low() | REDIR_MASKED);
  }
  lapic_write(LAPIC_EOI, 0);
  if (n == 1) rirr_after_eoi = redir_low() & REDIR_REMOTE_IRR ? 1 : 0;
}

static void tick_interrupt(struct exception_frame* f) {
  (void)f;
  ticks = ticks + 1;
  lapic_write(LAPIC_EOI, 0);
}

/* SDM vol. 3 §10.9: a spurious interrupt gets no EOI. */
static void spurious_interrupt(struct exception_frame* f) {
  (void)f;
}

/* Waits until cond() or `limit` more ticks. */
static void wait_ticks(uint32_t limit, bool (*cond)(void)) {
  uint32_t start = ticks;
  while (!(cond && cond()) && ticks - start < limit) wait_for_interrupt();
}

static bool got_ged_irq(void) {
  return ged_irqs != 0;
}

int guest_main(void) {
  char v[32];
  uint64_t x;
  if (cmdline_get("ged_io", v, sizeof v)) {
    if (!parse_u64(v, &x) || x > 0xffff) guest_fail("bad ged_io=%s", v);
    ged_port = (uint16_t)x;
  } else if (cmdline_get("ged_mmio", v, sizeof v)) {
    if (!parse_u64(v, &x) || x & 3 || !mmio_range_ok(x, 4)) guest_fail("bad ged_mmio=%s", v);
    ged_mmio = x;
  } else {
    guest_fail("say where the GED's event register is: ged_io=PORT or ged_mmio=ADDR");
  }
  uint64_t bit = cmdline_u64("bit", 0);
  if (bit > 31) guest_fail("bad bit=%llu", (unsigned long long)bit);
  uint32_t mask = 1u << bit;
  uint64_t timeout_ms = cmdline_u64("timeout_ms", 20000);

  struct ged_irq irq = find_ged_irq();
  printf("GED_CRS_GSI=%u\nGED_CRS_TRIGGER=%s\nGED_CRS_POLARITY=%s\n", irq.gsi,
         irq.level ? "level" : "edge", irq.active_low ? "low" : "high");
  if (cmdline_get("gsi", v, sizeof v) && (!parse_u64(v, &x) || x != irq.gsi))
    guest_fail("the DSDT gives the GED GSI %u, the command line gsi=%s", irq.gsi, v);
  if (cmdline_get("trigger", v, sizeof v)) {
    if (strlen(v) == 5 && memcmp(v, "level", 5) == 0)
      irq.level = true;
    else if (strlen(v) == 4 && memcmp(v, "edge", 4) == 0)
      irq.level = false;
    else
      guest_fail("bad trigger=%s (level or edge)", v);
    printf("GED_TRIGGER_OVERRIDE=%s\n", v);
  }
  level_triggered = irq.level;
  find_ioapic(irq.gsi);

  uint32_t initial = ged_read();
  printf("GED_INITIAL=0x%x\n", initial);
  if (initial != 0) guest_fail("events pending before the press: 0x%x", initial);

  /* Only the IOAPIC delivers: both 8259s masked (OCW1), LINT0 (ExtINT on
   * the BSP after reset) masked; LAPIC on, spurious vector 0xff. */
  outb(0x21, 0xff);
  outb(0xa1, 0xff);
  lapic_write(LAPIC_LVT_LINT0, lapic_read(LAPIC_LVT_LINT0) | LVT_MASKED);
  set_interrupt_handler(GED_VECTOR, ged_interrupt);
  set_interrupt_handler(TICK_VECTOR, tick_interrupt);
  set_interrupt_handler(SPURIOUS_VECTOR, spurious_interrupt);
  lapic_write(LAPIC_SVR, 0x100 | SPURIOUS_VECTOR);

  /* Redirection entry: fixed delivery, physical destination = this CPU,
   * trigger mode and polarity as _CRS says, unmasked (high dword first). */
  ioapic_write(0x11 + 2 * ged_pin, lapic_id() << 24);
  ioapic_write(0x10 + 2 * ged_pin, GED_VECTOR | (irq.level ? REDIR_LEVEL : 0) |
                                       (irq.active_low ? REDIR_ACTIVE_LOW : 0));

  /* Periodic LAPIC timer, divide by 16: 625000 counts = 10 ms at the
   * 1 GHz APIC bus KVM and QEMU emulate (only timeouts depend on it). */
  lapic_write(LAPIC_TIMER_DIV, 0x3);
  lapic_write(LAPIC_LVT_TIMER, TICK_VECTOR | LVT_TIMER_PERIODIC);
  lapic_write(LAPIC_TIMER_INIT, 625000);

  puts_line("GED_READY");
  wait_ticks((uint32_t)(timeout_ms / TICK_MS), got_ged_irq);
  if (!ged_irqs)
    guest_fail("no GED interrupt within %llu ms (%u timer ticks)", (unsigned long long)timeout_ms,
               ticks);
  /* A line that did not drop fires again right after the EOI. */
  wait_ticks(QUIET_TICKS, NULL);
  lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
  lapic_write(LAPIC_TIMER_INIT, 0);
  ioapic_write(0x10 + 2 * ged_pin, REDIR_MASKED);
  uint32_t after = ged_read();

  printf("GED_IRQS=%u\nGED_ISR=%u\nGED_EVENT=0x%x\nGED_EVENT_AGAIN=0x%x\n", ged_irqs,
         isr_in_handler, event_first, event_again);
  if (irq.level)
    printf("GED_REMOTE_IRR=%u\nGED_REMOTE_IRR_AFTER_EOI=%u\n", rirr_in_handler, rirr_after_eoi);
  printf("GED_PENDING_AFTER=0x%x\n", after);

  if (ged_irqs != 1) guest_fail("%u GED interrupts for one press", ged_irqs);
  if (!isr_in_handler) guest_fail("GED vector not in service in the LAPIC during its handler");
  if (!(event_first & mask))
    guest_fail("power-button bit %llu not set in 0x%x", (unsigned long long)bit, event_first);
  if (event_again != 0)
    guest_fail("second read gave 0x%x: the register is not read-to-clear", event_again);
  if (irq.level && !rirr_in_handler)
    guest_fail("remote IRR clear in the handler: the IOAPIC did not take the line as level");
  if (irq.level && rirr_after_eoi) guest_fail("remote IRR still set after the EOI");
  if (after != 0) guest_fail("events pending after the press was handled: 0x%x", after);
  puts_line("GED_POWER_BUTTON_OK");
  return EXIT_PASS;
}

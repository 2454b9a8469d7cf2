/* Finding ACPI tables: RSDP (ACPI 6.4 §5.2.5), XSDT/RSDT (§5.2.7/§5.2.8),
 * table checksums (§5.2.6). Tables come from the VMM under test, so every
 * address and length is checked before it is read, and a bad checksum is
 * reported as a line of its own. */
#include "runtime.h"

/* Tables bigger than this are treated as corrupt rather than walked. */
#define ACPI_TABLE_MAX (1u << 20)

bool acpi_checksum_ok(const void* p, size_t len) {
  const uint8_t* b = p;
  uint8_t sum = 0;
  for (size_t i = 0; i < len; i++) sum = (uint8_t)(sum + b[i]);
  return sum == 0;
}

static bool rsdp_valid(uint64_t addr) {
  if (!phys_range_ok(addr, 36)) return false;
  const uint8_t* p = phys(addr);
  if (memcmp(p, "RSD PTR ", 8) != 0) return false;
  if (!acpi_checksum_ok(p, 20)) {
    printf("ACPI_ERROR=bad checksum in RSDP at 0x%llx\n", (unsigned long long)addr);
    return false;
  }
  if (p[15] >= 2 && !acpi_checksum_ok(p, 36)) {
    printf("ACPI_ERROR=bad extended checksum in RSDP at 0x%llx\n", (unsigned long long)addr);
    return false;
  }
  return true;
}

uint64_t acpi_find_rsdp(void) {
  if (boot_info.rsdp_paddr) {
    if (rsdp_valid(boot_info.rsdp_paddr)) return boot_info.rsdp_paddr;
    printf("ACPI_ERROR=no valid RSDP at the loader's rsdp_paddr 0x%llx\n",
           (unsigned long long)boot_info.rsdp_paddr);
  }
  /* §5.2.5.1: on 16-byte boundaries in the BIOS read-only area. */
  for (uint64_t a = 0xe0000; a < 0x100000; a += 16)
    if (rsdp_valid(a)) return a;
  return 0;
}

/* A table header we may read in full, with a right checksum. */
static const struct acpi_header* checked_table(uint64_t addr) {
  if (!phys_range_ok(addr, sizeof(struct acpi_header))) {
    printf("ACPI_ERROR=table at 0x%llx is outside guest RAM\n", (unsigned long long)addr);
    return NULL;
  }
  const struct acpi_header* t = phys(addr);
  if (t->length < sizeof *t || t->length > ACPI_TABLE_MAX || !phys_range_ok(addr, t->length)) {
    printf("ACPI_ERROR=table at 0x%llx has bad length %u\n", (unsigned long long)addr, t->length);
    return NULL;
  }
  if (!acpi_checksum_ok(t, t->length)) {
    printf("ACPI_ERROR=bad checksum in %c%c%c%c at 0x%llx\n", t->signature[0], t->signature[1],
           t->signature[2], t->signature[3], (unsigned long long)addr);
    return NULL;
  }
  return t;
}

const struct acpi_header* acpi_find_table(const char sig[4]) {
  uint64_t rsdp_addr = acpi_find_rsdp();
  if (!rsdp_addr) return NULL;
  const uint8_t* rsdp = phys(rsdp_addr);
  uint64_t root;
  unsigned entry_size;
  uint32_t rsdt;
  memcpy(&rsdt, rsdp + 16, 4);
  if (rsdp[15] >= 2) {
    memcpy(&root, rsdp + 24, 8);
    entry_size = 8;
  } else {
    root = rsdt;
    entry_size = 4;
  }
  const struct acpi_header* r = checked_table(root);
  if (!r) return NULL;
  const char* want = entry_size == 8 ? "XSDT" : "RSDT";
  if (memcmp(r->signature, want, 4) != 0) {
    printf("ACPI_ERROR=root table at 0x%llx is not an %s\n", (unsigned long long)root, want);
    return NULL;
  }
  uint32_t n = (r->length - (uint32_t)sizeof *r) / entry_size;
  const uint8_t* entries = (const uint8_t*)r + sizeof *r;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t addr = 0;
    memcpy(&addr, entries + (size_t)i * entry_size, entry_size);
    if (!phys_range_ok(addr, sizeof(struct acpi_header))) {
      printf("ACPI_ERROR=%s entry %u (0x%llx) is outside guest RAM\n", want, i,
             (unsigned long long)addr);
      continue;
    }
    if (memcmp(((const struct acpi_header*)phys(addr))->signature, sig, 4) != 0) continue;
    const struct acpi_header* t = checked_table(addr);
    if (t) return t;
  }
  return NULL;
}

bool acpi_u8(const struct acpi_header* t, uint32_t off, uint8_t* v) {
  if (off >= t->length) return false;
  *v = ((const uint8_t*)t)[off];
  return true;
}

bool acpi_u32(const struct acpi_header* t, uint32_t off, uint32_t* v) {
  if (off > t->length || t->length - off < 4) return false;
  memcpy(v, (const uint8_t*)t + off, 4);
  return true;
}

bool acpi_u64(const struct acpi_header* t, uint32_t off, uint64_t* v) {
  if (off > t->length || t->length - off < 8) return false;
  memcpy(v, (const uint8_t*)t + off, 8);
  return true;
}

bool acpi_gas_at(const struct acpi_header* t, uint32_t off, struct acpi_gas* g) {
  if (off > t->length || t->length - off < sizeof *g) return false;
  memcpy(g, (const uint8_t*)t + off, sizeof *g);
  return true;
}

bool acpi_gas_write(const struct acpi_gas* g, uint32_t value) {
  if (g->address == 0) return false;
  unsigned width = g->bit_width ? g->bit_width : 8;
  value <<= g->bit_offset;
  if (g->space_id == 1) { /* system I/O */
    if (g->address > 0xffff) return false;
    uint16_t port = (uint16_t)g->address;
    if (width <= 8)
      outb(port, (uint8_t)value);
    else if (width <= 16)
      outw(port, (uint16_t)value);
    else
      outl(port, value);
    return true;
  }
  if (g->space_id == 0) { /* system memory; must be mapped */
    if (!phys_range_ok(g->address, 4) && !mmio_range_ok(g->address, 4)) return false;
    if (width <= 8)
      *(volatile uint8_t*)phys(g->address) = (uint8_t)value;
    else if (width <= 16)
      *(volatile uint16_t*)phys(g->address) = (uint16_t)value;
    else
      *(volatile uint32_t*)phys(g->address) = value;
    return true;
  }
  return false;
}

const struct acpi_header* acpi_dsdt(const struct acpi_header* fadt) {
  uint64_t x = 0;
  uint32_t legacy = 0;
  if (!acpi_u64(fadt, FADT_X_DSDT, &x) || x == 0) {
    if (!acpi_u32(fadt, FADT_DSDT, &legacy) || legacy == 0) return NULL;
    x = legacy;
  }
  const struct acpi_header* t = checked_table(x);
  if (t && memcmp(t->signature, "DSDT", 4) != 0) {
    printf("ACPI_ERROR=FADT DSDT pointer 0x%llx is a %c%c%c%c\n", (unsigned long long)x,
           t->signature[0], t->signature[1], t->signature[2], t->signature[3]);
    return NULL;
  }
  return t;
}

/* topology: what the VMM says about the CPU and NUMA layout.
 *   LEAF1=apicid=<n> logical=<n>                   leaf 1 EBX[31:24], EBX[23:16] (BSP)
 *   LEAF0B.<i>=type=<t> shift=<s> count=<c> x2apic=<id>   per level of leaf 0xB (BSP)
 *   LEAF1F.<i>=...                                 the same for leaf 0x1F, if offered
 *   MADT_CPU=uid=<u> apic=<id> flags=<f>           every Processor Local APIC entry
 *   SRAT_CPU=apic=<id> node=<d> flags=<f>          SRAT Processor Local APIC Affinity
 *   SRAT_MEM=base=<hex> len=<hex> node=<d> flags=<f>   SRAT Memory Affinity
 *   SLIT=<n> / SLIT.<i>=<d0>,<d1>,...              SLIT localities and matrix rows
 *   NO_SRAT / NO_SLIT                              when the table is absent
 *   STARTED=<n> APICIDS=<BSP first, then APs as they arrived>
 * Every table length and entry is bounds-checked (a VMM under test wrote
 * them); a malformed entry prints ERROR= and the guest exits 0x20.
 * CPUID runs at CPL 0 (see cpuid.c for why). Exit 0x10 when all is well. */
#include "runtime.h"

const char guest_name[] = "topology";

static bool failed;
#define BAD(...)         \
  do {                   \
    printf("ERROR=");    \
    printf(__VA_ARGS__); \
    printf("\n");        \
    failed = true;       \
  } while (0)

/* SDM Vol. 2A, CPUID leaf 0BH/1FH: levels until the level type is 0. */
static void print_levels(uint32_t leaf, const char* name) {
  uint32_t r[4];
  for (uint32_t i = 0; i < 8; i++) {
    cpuid_cpl0(leaf, i, r);
    uint32_t type = (r[2] >> 8) & 0xff;
    if (type == 0) return;
    printf("%s.%u=type=%u shift=%u count=%u x2apic=%u\n", name, i, type, r[0] & 0x1f, r[1] & 0xffff,
           r[3]);
  }
}

/* Walks the variable-length entries of a table from `start`, calling fn
 * with each (type, offset, length); stops at a malformed length. */
typedef void (*entry_fn)(const struct acpi_header* t, uint8_t type, uint32_t off, uint8_t len);
static void walk(const struct acpi_header* t, uint32_t start, entry_fn fn) {
  for (uint32_t off = start; off < t->length;) {
    uint8_t type, len;
    if (!acpi_u8(t, off, &type) || !acpi_u8(t, off + 1, &len) || len < 2 || len > t->length - off) {
      BAD("%c%c%c%c entry at offset %u has a bad length", t->signature[0], t->signature[1],
          t->signature[2], t->signature[3], off);
      return;
    }
    fn(t, type, off, len);
    off += len;
  }
}

/* ACPI 6.5 §5.2.12.2: type 0, length 8: UID, APIC ID, flags. */
static void madt_entry(const struct acpi_header* t, uint8_t type, uint32_t off, uint8_t len) {
  if (type != 0) return;
  uint8_t uid = 0, apic = 0;
  uint32_t flags = 0;
  if (len != 8 || !acpi_u8(t, off + 2, &uid) || !acpi_u8(t, off + 3, &apic) ||
      !acpi_u32(t, off + 4, &flags)) {
    BAD("MADT local APIC entry at %u has length %u", off, len);
    return;
  }
  printf("MADT_CPU=uid=%u apic=%u flags=%u\n", uid, apic, flags);
}

/* ACPI 6.5 §5.2.16.1 (type 0, length 16) and §5.2.16.2 (type 1, length 40). */
static void srat_entry(const struct acpi_header* t, uint8_t type, uint32_t off, uint8_t len) {
  if (type == 0) {
    uint8_t lo = 0, apic = 0, h0 = 0, h1 = 0, h2 = 0;
    uint32_t flags = 0;
    if (len != 16 || !acpi_u8(t, off + 2, &lo) || !acpi_u8(t, off + 3, &apic) ||
        !acpi_u32(t, off + 4, &flags) || !acpi_u8(t, off + 9, &h0) || !acpi_u8(t, off + 10, &h1) ||
        !acpi_u8(t, off + 11, &h2)) {
      BAD("SRAT processor entry at %u has length %u", off, len);
      return;
    }
    uint32_t node = lo | (uint32_t)h0 << 8 | (uint32_t)h1 << 16 | (uint32_t)h2 << 24;
    printf("SRAT_CPU=apic=%u node=%u flags=%u\n", apic, node, flags);
  } else if (type == 1) {
    uint32_t node = 0, flags = 0;
    uint64_t base = 0, size = 0;
    if (len != 40 || !acpi_u32(t, off + 2, &node) || !acpi_u64(t, off + 8, &base) ||
        !acpi_u64(t, off + 16, &size) || !acpi_u32(t, off + 28, &flags)) {
      BAD("SRAT memory entry at %u has length %u", off, len);
      return;
    }
    printf("SRAT_MEM=base=%llx len=%llx node=%u flags=%u\n", (unsigned long long)base,
           (unsigned long long)size, node, flags);
  }
}

static void print_slit(const struct acpi_header* t) {
  uint64_t n = 0;
  if (!acpi_u64(t, 36, &n) || n > 64 || t->length != 44 + n * n) {
    BAD("SLIT with %llu localities has length %u", (unsigned long long)n, t->length);
    return;
  }
  printf("SLIT=%llu\n", (unsigned long long)n);
  for (uint32_t i = 0; i < n; i++) {
    printf("SLIT.%u=", i);
    for (uint32_t j = 0; j < n; j++) {
      uint8_t d = 0;
      acpi_u8(t, (uint32_t)(44 + i * n + j), &d);
      printf(j ? ",%u" : "%u", d);
    }
    printf("\n");
  }
}

int guest_main(void) {
  uint32_t r[4];
  cpuid_cpl0(0, 0, r);
  uint32_t max = r[0];
  cpuid_cpl0(1, 0, r);
  printf("LEAF1=apicid=%u logical=%u\n", r[1] >> 24, (r[1] >> 16) & 0xff);
  if (max >= 0xb) print_levels(0xb, "LEAF0B");
  if (max >= 0x1f) print_levels(0x1f, "LEAF1F");

  const struct acpi_header* madt = acpi_find_table("APIC");
  if (madt)
    walk(madt, 44, madt_entry);
  else
    BAD("no MADT");
  const struct acpi_header* srat = acpi_find_table("SRAT");
  if (srat)
    walk(srat, 48, srat_entry);
  else
    printf("NO_SRAT\n");
  const struct acpi_header* slit = acpi_find_table("SLIT");
  if (slit)
    print_slit(slit);
  else
    printf("NO_SLIT\n");

  /* Start every enabled AP at the APIC ID the MADT gives: proves the VMM's
   * vCPUs answer to those IDs (skiff: KVM vCPU id = topology APIC ID). */
  uint32_t running;
  uint32_t cpus = smp_start_all(&running);
  printf("STARTED=%u APICIDS=%u", running, lapic_id());
  for (uint32_t i = 0; i + 1 < running && i < MAX_APS; i++) printf(",%u", ap_apic_ids[i]);
  printf("\n");
  return failed || running != cpus ? 0x20 : 0x10;
}

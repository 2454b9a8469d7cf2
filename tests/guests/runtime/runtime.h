/* The test guests' runtime: what every guest in tests/guests/ can use.
 *
 * Boot: boot.S takes the 32-bit PVH or Multiboot entry (bz_head.S the
 * bzImage ones) to long mode,
 * runtime_start() (cpu.c) sets up the TSS and IDT, prints
 * "GUEST <guest_name> START", parses the boot information, and calls
 * guest_main() AT CPL 3 (IOPL 3, so port I/O works directly). guest_main's
 * return value goes to guest_exit(). Code that needs CPL 0 goes through
 * kernel_call(). Why ring 3: on a nested-KVM host every CPL-0 instruction
 * is emulated (~0.7 us), CPL-3 code runs natively. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "boot_defs.h"

/* Each guest defines these two. */
extern const char guest_name[];
int guest_main(void);

/* ---- port I/O ---- */
static inline void outb(uint16_t port, uint8_t v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outw(uint16_t port, uint16_t v) {
  __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t v) {
  __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline void cpu_relax(void) {
  __asm__ volatile("pause");
}
static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}
static inline void cpuid(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
  __asm__ volatile("cpuid"
                   : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                   : "a"(leaf), "c"(subleaf));
}
static inline unsigned current_cpl(void) {
  uint16_t cs;
  __asm__ volatile("mov %%cs, %0" : "=r"(cs));
  return cs & 3u;
}

/* ---- console (console.c): 16550 at 0x3f8, polled ---- */
void serial_init(void);
void serial_putc(char c);
int serial_getc(void); /* blocks until the UART has a byte */
void puts_line(const char* s);
int printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char* fmt, va_list ap);
/* Writes v to the isa-debug-exit port 0xf4 (the VMM exits with (v<<1)|1);
 * if that returns, stops the CPU. */
_Noreturn void guest_exit(uint8_t v);
/* Prints "ERROR=<msg>" and exits with 0x7e: the guest could not even run
 * its check (bad boot information, missing ACPI table...). */
_Noreturn void guest_fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
#define EXIT_GUEST_ERROR 0x7e
#define EXIT_EXCEPTION 0x7f

void* memset(void* d, int c, size_t n);
void* memcpy(void* d, const void* s, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);

/* ---- boot information (bootparams.c) ---- */
#define MAX_MEM_RANGES 64
#define MAX_MODULES 8
struct mem_range {
  uint64_t start, len;
  uint32_t type; /* e820 type: 1 RAM, 2 reserved, 3 ACPI, 4 NVS */
};
struct boot_module {
  uint64_t addr, size;
};
struct boot_info {
  int proto;           /* BOOT_PROTO_* */
  const char* cmdline; /* never NULL */
  uint64_t rsdp_paddr; /* 0 if the loader did not say */
  uint32_t n_mem;
  struct mem_range mem[MAX_MEM_RANGES];
  uint32_t n_modules;
  struct boot_module modules[MAX_MODULES];
};
extern struct boot_info boot_info;
/* Parses the loader's structure; on hostile or broken input calls guest_fail. */
void parse_boot_info(int proto, uint64_t info_paddr);
/* "pvh", "multiboot", "bzimage" (what bootinfo prints as BOOTPROTO=). */
const char* boot_proto_name(int proto);
/* The identity map covers [0, 1 GiB): true if [addr, addr+len) is inside. */
bool phys_range_ok(uint64_t addr, uint64_t len);
/* The uncached window [0xfe000000, 4 GiB): IOAPIC, LAPIC, small MMIO. */
bool mmio_range_ok(uint64_t addr, uint64_t len);
static inline void* phys(uint64_t addr) {
  return (void*)(uintptr_t)addr;
}
/* Command line "key=value" lookup: copies the value (or "" for a bare key)
 * into out and returns true if the key is present. */
bool cmdline_get(const char* key, char* out, size_t out_len);
uint64_t cmdline_u64(const char* key, uint64_t dflt);
bool parse_u64(const char* s, uint64_t* out); /* decimal or 0x-hex */

/* ---- CPU (cpu.c, cpu.S) ---- */
uint64_t run_user(uint64_t (*fn)(uint64_t), uint64_t arg);
uint64_t kernel_call(uint64_t (*fn)(uint64_t), uint64_t arg);
/* CPUID executed at CPL 0 (through kernel_call): on nested-KVM hosts a
 * CPL-3 CPUID is answered by the outer VM, not by the VMM under test. */
void cpuid_cpl0(uint32_t leaf, uint32_t subleaf, uint32_t r[4]);
struct exception_frame {
  uint64_t r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax, rbx;
  uint64_t vector, error;
  uint64_t rip, cs, rflags, rsp, ss;
};
/* Interrupts (vectors 32-255): set_interrupt_handler() installs fn, which
 * runs at CPL 0 with interrupts off and must do its own LAPIC EOI.
 * wait_for_interrupt() runs STI; HLT at CPL 0 (ring 3 keeps IF = 0), so a
 * guest takes interrupts only while it waits there; a vector without a
 * handler stops the guest with EXIT_EXCEPTION. */
void set_interrupt_handler(uint8_t vector, void (*fn)(struct exception_frame*));
void wait_for_interrupt(void);

/* ---- ACPI (acpi.c) ---- */
struct acpi_header {
  char signature[4];
  uint32_t length;
  uint8_t revision;
  uint8_t checksum;
  char oem_id[6];
  char oem_table_id[8];
  uint32_t oem_revision;
  uint32_t creator_id;
  uint32_t creator_revision;
} __attribute__((packed));
/* ACPI 6.4 §5.2.3.2 Generic Address Structure. */
struct acpi_gas {
  uint8_t space_id; /* 0 system memory, 1 system I/O */
  uint8_t bit_width;
  uint8_t bit_offset;
  uint8_t access_size;
  uint64_t address;
} __attribute__((packed));
/* Finds the RSDP (boot_info.rsdp_paddr, else the BIOS area scan); 0 if none. */
uint64_t acpi_find_rsdp(void);
/* The first table with this signature whose checksum is right; prints
 * "ACPI_ERROR=..." for every bad one it meets. NULL if none. */
const struct acpi_header* acpi_find_table(const char sig[4]);
/* The DSDT the FADT points at (X_DSDT if set), checksum verified. */
const struct acpi_header* acpi_dsdt(const struct acpi_header* fadt);
bool acpi_checksum_ok(const void* p, size_t len);
/* Little-endian field readers that refuse to read past the table. */
bool acpi_u8(const struct acpi_header* t, uint32_t off, uint8_t* v);
bool acpi_u32(const struct acpi_header* t, uint32_t off, uint32_t* v);
bool acpi_u64(const struct acpi_header* t, uint32_t off, uint64_t* v);
bool acpi_gas_at(const struct acpi_header* t, uint32_t off, struct acpi_gas* g);
/* Writes value to a GAS register (I/O or memory, 8/16/32-bit); false if the
 * GAS is empty or unsupported. */
bool acpi_gas_write(const struct acpi_gas* g, uint32_t value);

/* FADT (ACPI 6.4 §5.2.9, table 5.9) offsets the guests use. */
#define FADT_DSDT 40
#define FADT_PM1A_CNT_BLK 64
#define FADT_CENTURY 108
#define FADT_FLAGS 112
#define FADT_RESET_REG 116
#define FADT_RESET_VALUE 128
#define FADT_X_DSDT 140
#define FADT_X_PM1A_CNT_BLK 172
#define FADT_SLEEP_CONTROL_REG 244
#define FADT_FLAG_RESET_REG_SUP (1u << 10)
#define FADT_FLAG_HW_REDUCED_ACPI (1u << 20)

/* ---- LAPIC and SMP (smp.c) ---- */
#define LAPIC_BASE 0xfee00000u
uint32_t lapic_read(uint32_t reg);
void lapic_write(uint32_t reg, uint32_t v);
uint32_t lapic_id(void);
#define MAX_CPUS (MAX_APS + 1)
/* Enabled processors in the MADT (types 0 and 9); their APIC IDs in ids. */
uint32_t madt_cpus(uint32_t* ids, uint32_t max_ids);
/* Sends INIT, SIPI, SIPI to the APIC ID (Intel SDM vol. 3 §8.4.4.1). */
void smp_start_ap(uint32_t apic_id);
void smp_copy_trampoline(void);
/* APs that reached C, and their APIC IDs in arrival order. */
extern volatile uint32_t ap_started;
extern volatile uint32_t ap_apic_ids[MAX_APS];
/* Starts every AP the MADT enables (INIT-SIPI-SIPI at its APIC ID) and
 * waits, bounded (2 s), for each to check in. Returns how many CPUs the MADT
 * enables; *running gets how many run, the BSP included (APIC IDs of the
 * APs in ap_apic_ids). Fails the guest if the MADT lists more than MAX_CPUS. */
uint32_t smp_start_all(uint32_t* running);
/* Busy-waits roughly us microseconds (TSC, assumes >= 1 GHz at most 4x off). */
void delay_us(uint64_t us);

/* ---- CMOS (cmos.c) ---- */
uint8_t cmos_read(uint8_t index);
void cmos_write(uint8_t index, uint8_t v);

/* ---- FNV-1a 64 (console.c) ---- */
uint64_t fnv1a64(const void* p, uint64_t len);

/* Constants shared by the runtime's assembly and C. */
#pragma once

#define BOOT_PROTO_UNKNOWN 3
#define BOOT_PROTO_PVH 1
#define BOOT_PROTO_MULTIBOOT 2
#define BOOT_PROTO_BZIMAGE 4

/* Port 0x80 boot markers (README "Boot markers"): the VMM logs the time of
 * each write. */
#define POST_PORT 0x80
#define BOOT_MARKER_ENTRY 0x01 /* first instructions of the 32/64-bit entry */
#define BOOT_MARKER_MAIN 0x02  /* guest_main() is about to run (CPL 3) */

#define MB_HEADER_MAGIC 0x1BADB002
#define MB_HEADER_FLAGS 0x00000003
#define MB_BOOTLOADER_MAGIC 0x2BADB002
#define PVH_START_MAGIC 0x336ec578
#define BZ_LOAD_ADDR 0x100000 /* pref_address; the bzImage is not relocatable */

#define SEL_KCODE64 0x08
#define SEL_KDATA 0x10
#define SEL_KCODE32 0x18
#define SEL_UDATA 0x20
#define SEL_UCODE64 0x28
#define SEL_TSS 0x30

#define CR0_PE 0x1
#define CR0_ET 0x10
#define CR0_WP 0x10000
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define MSR_EFER 0xC0000080
#define EFER_LME 0x100

#define PTE_P 0x1
#define PTE_W 0x2
#define PTE_U 0x4
#define PTE_PWT 0x8
#define PTE_PCD 0x10
#define PTE_PS 0x80

#define BOOT_STACK_SIZE 0x4000
#define MAX_APS 63
#define AP_STACK_SHIFT 12

/* Real-mode AP trampoline: SIPI vector 0x10 -> 0x10000 (skiff keeps its boot
 * data in 0x500-0xefff and the command line at 0x20000). */
#define TRAMPOLINE_ADDR 0x10000
#define TRAMPOLINE_SIPI_VECTOR (TRAMPOLINE_ADDR >> 12)

#define GDT_BYTES 64 /* 6 descriptors + a 16-byte TSS descriptor */
#define USER_STACK_SIZE 0x8000
#define INTR_STACK_SIZE 0x4000
/* IOPL = 3, IF = 0. IOPL alone is not enough on every host (the nested
 * hypervisor on ours ignores it), so the TSS also has an all-allow I/O
 * permission bitmap. */
#define RFLAGS_USER 0x3002

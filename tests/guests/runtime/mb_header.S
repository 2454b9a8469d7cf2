/* Multiboot v1 header (Multiboot spec 0.6.96 §3.1.1), linked only into the
 * .mb.elf images. It must sit, 4-byte aligned, in the first 8 KiB of the
 * file; the linker script puts .multiboot first. Flags: bit 0 page-align
 * modules, bit 1 provide memory information (mem_* and mmap_*). No a.out
 * kludge (bit 16): the loader takes the load addresses from the ELF32
 * program headers and the entry from e_entry (mb_entry). */
#include "boot_defs.h"

	.section .multiboot, "a"
	.balign 4
	.long MB_HEADER_MAGIC
	.long MB_HEADER_FLAGS
	.long -(MB_HEADER_MAGIC + MB_HEADER_FLAGS)

	.section .note.GNU-stack, "", @progbits

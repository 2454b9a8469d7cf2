/* bzImage entries, linked only into the <name>.bzImage flat kernel, at its
 * start (guest_bz.ld). The loader puts the image at pref_address = 1 MiB
 * (relocatable_kernel = 0) and boot_params (the "zero page") somewhere
 * below 1 GiB.
 *
 *   +0x000  bz_entry32, boot.rst "32-bit Boot Protocol": protected mode,
 *           paging off, flat __BOOT_CS/__BOOT_DS, ESI = boot_params. The
 *           real-mode entry in the setup sectors (bz_setup.S) jumps here.
 *   +0x100  kernel_info (boot.rst "The kernel_info").
 *   +0x200  bz_entry64, boot.rst "64-bit Boot Protocol": long mode with the
 *           loader's identity map and GDT, RSI = boot_params.
 *
 * Both write BOOT_MARKER_ENTRY to port 0x80 first, clear .bss (the
 * protocol loads only the file's bytes; the rest of init_size is whatever
 * was in RAM, e.g. after a reboot) and join boot.S: the 32-bit one at
 * long_mode32, the 64-bit one at entry64 after loading the runtime's own
 * GDT and page tables (the loader's are in memory the runtime does not
 * reserve). Each is about a dozen CPL-0 instructions; `rep stos` counts as
 * one instruction here, but KVM emulates each iteration, so .bss is kept
 * small (see README). */
#include "boot_defs.h"

	.section .text.bz32, "ax"
	.code32
	.globl bz_entry32
bz_entry32:
	movb $BOOT_MARKER_ENTRY, %al
	outb %al, $POST_PORT
	cld
	xorl %eax, %eax
	movl $bss_start, %edi
	movl $bss_dwords, %ecx
	rep stosl
	movl $BOOT_PROTO_BZIMAGE, %edi
	jmp long_mode32         /* ESI = boot_params survives into C */

/* boot.rst "Details of the kernel_info Fields": header, size of the fixed
 * part, total size, setup_type_max (no setup_data type is read). */
	.section .rodata.bz_kernel_info, "a"
	.balign 4
kernel_info:
	.ascii "LToP"
	.long kernel_info_var_len_data - kernel_info
	.long kernel_info_end - kernel_info
	.long 0
kernel_info_var_len_data:
kernel_info_end:

	.section .text.bz64, "ax"
	.code64
	.globl bz_entry64
bz_entry64:
	movb $BOOT_MARKER_ENTRY, %al
	outb %al, $POST_PORT
	cld
	xorl %eax, %eax
	movl $bss_start, %edi
	movl $bss_qwords, %ecx
	rep stosq
	lgdt gdt_ptr(%rip)
	movl $pml4, %eax
	movq %rax, %cr3
	movl $BOOT_PROTO_BZIMAGE, %edi
	/* Reload CS from the new GDT (the loader's code selector may be
	 * anything in ours): a far return, which KVM's emulator handles in
	 * long mode without the REX.W far-jump form AMD lacks. */
	pushq $SEL_KCODE64
	pushq $entry64
	lretq

	.section .note.GNU-stack, "", @progbits

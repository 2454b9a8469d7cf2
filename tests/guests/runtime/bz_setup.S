/* Real-mode code of the bzImage setup sectors, for BIOS loaders (QEMU's
 * -kernel through SeaBIOS' linuxboot option ROM, GRUB's `linux16`), which
 * enter a bzImage at setup offset 0x200 in real mode with CS = setup
 * segment + 0x20, DS = ES = SS = setup segment (boot.rst "Running the
 * Kernel"). Loaders that use the 32- or 64-bit boot protocol (skiff) never
 * run it. Linked at 0x200 (offsets from the start of the setup sectors,
 * which is also DS's base); mkbzimage.py fills the header this code jumps
 * over.
 *
 * What it does, the minimum of Linux's own setup (arch/x86/boot):
 *  1. boot_params at setup + 0x1000 (inside the heap the loader gives us up
 *     to heap_end_ptr; QEMU puts the command line at setup + 0x10000),
 *     zeroed, with the setup header copied in (boot.rst "32-bit Boot
 *     Protocol": from 0x1f1 to 0x202 + the byte at 0x201);
 *  2. the memory map from the BIOS (INT 15h, AX=E820h) into e820_table;
 *  3. protected mode with a GDT holding __BOOT_CS (0x10) and __BOOT_DS
 *     (0x18), DS/ES/SS = 0x18, ESI = boot_params, EBP = EDI = EBX = 0, and
 *     a jump to code32_start (the protected-mode kernel's 32-bit entry).
 * A20 is left as the BIOS set it (enabled on QEMU's machines). All of this
 * runs emulated on a nested-KVM host: about 15 instructions plus 6 per
 * e820 entry. */
#include "boot_defs.h"

#define BP 0x1000 /* boot_params at setup + 0x1000 */
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128
#define HDR_START 0x1f1
#define HDR_CODE32_START 0x214
#define HEADER_END 0x270 /* mkbzimage.py HEADER_END */
#define SMAP 0x534d4150  /* "SMAP" */

	.text
	.code16
	.globl bz_setup_start
bz_setup_start:
	/* boot.rst: the jump at 0x200 also gives the header's length. */
	.byte 0xeb, setup_code - 1f
1:	.fill HEADER_END - 0x202, 1, 0

setup_code:
	cli
	cld
	/* DS = ES = SS = the setup segment throughout: BIOSes differ in which
	 * one they write the E820 entry through (qboot, QEMU microvm's
	 * firmware, uses SS), so boot_params is addressed as setup + BP. */
	movw %ds, %ax
	movw %ax, %es
	movw $BP, %di           /* zero boot_params */
	xorw %ax, %ax
	movw $0x800, %cx
	rep stosw
	movw $HDR_START, %si    /* copy the setup header into it */
	movw $(BP + HDR_START), %di
	movw $(HEADER_END - HDR_START), %cx
	rep movsb

	/* INT 15h E820: one 20-byte entry per call into ES:DI; EBX is the
	 * BIOS's continuation value, 0 after the last entry. */
	xorl %ebx, %ebx
	xorw %bp, %bp
	movw $(BP + BP_E820_TABLE), %di
2:	movl $0xe820, %eax
	movl $20, %ecx
	movl $SMAP, %edx
	int $0x15
	jc 3f
	cmpl $SMAP, %eax
	jne 3f
	incw %bp
	addw $20, %di
	testl %ebx, %ebx
	jz 3f
	cmpw $BP_E820_MAX, %bp
	jb 2b
3:	movw %bp, %ax
	movb %al, BP + BP_E820_ENTRIES

	/* Linear addresses: the GDT's (for lgdt) and boot_params' (ESI). */
	movw %ds, %ax
	movzwl %ax, %esi
	shll $4, %esi
	leal gdt(%esi), %eax
	movl %eax, gdt_ptr + 2
	addl $BP, %esi
	movl %ds:HDR_CODE32_START, %eax
	movl %eax, code32_target  /* self-modifying far jump below */
	lgdtl gdt_ptr
	movl %cr0, %eax
	orb $CR0_PE, %al
	movl %eax, %cr0
	movw $0x18, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	xorl %ebp, %ebp
	xorl %edi, %edi
	xorl %ebx, %ebx
	/* ljmpl $0x10, $code32_start: the offset is patched above. */
	.byte 0x66, 0xea
code32_target:
	.long 0
	.word 0x10

	.balign 8
gdt:
	.quad 0
	.quad 0
	.quad 0x00cf9a000000ffff        /* 0x10 __BOOT_CS: 4 GiB flat, execute/read */
	.quad 0x00cf92000000ffff        /* 0x18 __BOOT_DS: 4 GiB flat, read/write */
gdt_ptr:
	.word gdt_ptr - gdt - 1
	.long 0

	.section .note.GNU-stack, "", @progbits

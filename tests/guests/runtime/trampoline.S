/* Real-mode AP trampoline. smp.c copies [trampoline_start, trampoline_end)
 * to TRAMPOLINE_ADDR and sends STARTUP IPIs with vector
 * TRAMPOLINE_SIPI_VECTOR, so an AP starts here with CS = 0x1000, IP = 0
 * (Intel SDM vol. 3 §8.4.4). It loads the runtime's GDT, enters protected
 * mode and joins the BSP's long-mode path (boot.S long_mode32) with EDI = 0,
 * which sends it to ap_entry64. The code is position-dependent on purpose:
 * every address is computed for TRAMPOLINE_ADDR. */
#include "boot_defs.h"

#define TRAMP(sym) (TRAMPOLINE_ADDR + ((sym) - trampoline_start))

	.section .rodata.trampoline, "a"
	.globl trampoline_start, trampoline_end
	.code16
trampoline_start:
	cli
	movw %cs, %ax
	movw %ax, %ds
	lgdtl tramp_gdt_ptr - trampoline_start
	movl %cr0, %eax
	orl $CR0_PE, %eax
	movl %eax, %cr0
	ljmpl $SEL_KCODE32, $TRAMP(tramp32)

	.code32
tramp32:
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %edi, %edi
	movl $long_mode32, %eax
	jmp *%eax

	.balign 8
tramp_gdt_ptr:
	.word GDT_BYTES - 1
	.long gdt
trampoline_end:

	.section .note.GNU-stack, "", @progbits

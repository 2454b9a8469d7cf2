/* 32-bit entry (PVH and Multiboot v1) -> 64-bit long mode -> runtime_start().
 *
 * Every instruction here runs at CPL 0, which on a nested-KVM host is
 * emulated one instruction at a time (~0.7 us each), so the path is kept to
 * about twenty instructions: the GDT and the page tables are built by the
 * assembler as initialised data, not by loops at boot.
 *
 * Both entry points are in every image; the PVH note names pvh_entry, the
 * ELF entry (e_entry, used by Multiboot loaders) is mb_entry. The Multiboot
 * header lives in mb_header.S and is linked only into the .mb.elf images:
 * QEMU tries Multiboot before PVH and refuses a 64-bit ELF that carries it.
 * The PVH note is linked only into the .pvh.elf images (guest_mb.ld discards
 * it): skiff, like a vmlinux loader, prefers PVH when both are present.
 * The bzImage entries (32-bit at +0, 64-bit at +0x200) are in bz_head.S and
 * join long_mode32 / entry64 below.
 *
 * The first instructions of each entry write BOOT_MARKER_ENTRY to port 0x80.
 */
#include "boot_defs.h"

/* Xen PVH: ELF note type 18 (XEN_ELFNOTE_PHYS32_ENTRY), name "Xen", 32-bit
 * physical entry address (xen/include/public/elfnote.h). */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4                 /* namesz: "Xen\0" */
	.long 4                 /* descsz */
	.long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long pvh_entry

	.section .text.boot32, "ax"
	.code32
	.globl pvh_entry, mb_entry
/* PVH (xen/include/public/arch-x86/hvm/start_info.h): protected mode, paging
 * off, flat segments, EBX = struct hvm_start_info. */
pvh_entry:
	movb $BOOT_MARKER_ENTRY, %al    /* boot marker: first thing, one OUT */
	outb %al, $POST_PORT
	movl $BOOT_PROTO_PVH, %edi
	movl %ebx, %esi
	jmp long_mode32

/* Multiboot: EAX = 0x2BADB002, EBX = multiboot_info. A wrong magic is passed
 * on as BOOT_PROTO_UNKNOWN so C can report it. */
mb_entry:
	movl $BOOT_PROTO_MULTIBOOT, %edi
	cmpl $MB_BOOTLOADER_MAGIC, %eax
	je 1f
	movl $BOOT_PROTO_UNKNOWN, %edi
1:	movb $BOOT_MARKER_ENTRY, %al    /* boot marker, once EAX has been read */
	outb %al, $POST_PORT
	movl %ebx, %esi
	/* fall through */

/* Shared by the BSP and the APs (the AP trampoline jumps here with EDI=0):
 * CR3 = static PML4, CR4.PAE, EFER.LME, CR0.PG|PE, far jump to 64-bit code.
 * EDI/ESI survive into 64-bit mode. */
	.globl long_mode32
long_mode32:
	lgdtl gdt_ptr
	movl $pml4, %eax
	movl %eax, %cr3
	movl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl $(CR0_PG | CR0_WP | CR0_ET | CR0_PE), %eax
	movl %eax, %cr0
	ljmpl $SEL_KCODE64, $entry64

	.code64
/* EDI = BOOT_PROTO_* (0 for an AP), ESI = boot information. Also the
 * target of the bzImage 64-bit entry once it has loaded this GDT and CR3. */
	.globl entry64
entry64:
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	testl %edi, %edi
	jz ap_entry64
	movl $boot_stack_top, %esp
	movl %edi, %edi         /* zero-extend: upper halves are undefined */
	movl %esi, %esi
	call runtime_start
	/* runtime_start does not return */
2:	cli
	hlt
	jmp 2b

/* An AP: take the next stack slot, then C. */
ap_entry64:
	movl $1, %eax
	lock xaddl %eax, ap_next_slot(%rip)
	cmpl $MAX_APS, %eax
	jae 2b
	movl %eax, %edi         /* ap_main(slot) */
	incl %eax
	shll $AP_STACK_SHIFT, %eax
	leaq ap_stacks(%rip), %rsp
	addq %rax, %rsp
	call ap_main
	jmp 2b

/* ---- data: GDT and identity page tables, built at assembly time ---- */
	.section .data.boot, "aw"
	.balign 16
	.globl gdt, gdt_ptr
gdt:
	.quad 0                         /* 0x00 null */
	.quad 0x00af9a000000ffff        /* 0x08 kernel code, 64-bit */
	.quad 0x00cf92000000ffff        /* 0x10 kernel data */
	.quad 0x00cf9a000000ffff        /* 0x18 kernel code, 32-bit (AP trampoline) */
	.quad 0x00cff2000000ffff        /* 0x20 user data (DPL 3) */
	.quad 0x00affa000000ffff        /* 0x28 user code, 64-bit (DPL 3) */
	.quad 0, 0                      /* 0x30 TSS (16 bytes), filled by C */
	.if . - gdt - GDT_BYTES
	.error "GDT_BYTES does not match the GDT"
	.endif
gdt_end:
	.balign 4
	.word 0
gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt
	.long 0                         /* high half for lgdt in 64-bit mode */

	.globl ap_next_slot
ap_next_slot:
	.long 0

/* 2 MiB pages (no need for the 1 GiB-page CPUID bit the VMM might hide).
 * All levels carry U so ring 3 can use the same map. First GiB identity
 * mapped; [0xfe000000, 4 GiB) uncached: IOAPIC (0xfec00000), LAPIC
 * (0xfee00000) and the small MMIO blocks VMMs put there (QEMU microvm's
 * ACPI GED sleep/reset registers at 0xfea00000). */
	.section .data.pagetables, "aw"
	.balign 4096
	.globl pml4
pml4:
	.quad pdpt + PTE_P + PTE_W + PTE_U
	.fill 511, 8, 0
pdpt:
	.quad pd_low + PTE_P + PTE_W + PTE_U
	.quad 0, 0
	.quad pd_high + PTE_P + PTE_W + PTE_U   /* 3 GiB .. 4 GiB */
	.fill 508, 8, 0
pd_low:
	.set addr, 0
	.rept 512
	.quad addr + PTE_P + PTE_W + PTE_U + PTE_PS
	.set addr, addr + 0x200000
	.endr
pd_high:
	.fill 0x1f0, 8, 0
	.set addr, 0xfe000000
	.rept 16
	.quad addr + PTE_P + PTE_W + PTE_U + PTE_PWT + PTE_PCD + PTE_PS
	.set addr, addr + 0x200000
	.endr

/* Stacks go in .stack (guest_sections.ld: after .bss, not cleared by the
 * bzImage entries; a stack needs no zeroing). */
	.section .stack, "aw", @nobits
	.balign 4096
	.globl boot_stack_top, ap_stacks
boot_stack:
	.skip BOOT_STACK_SIZE
boot_stack_top:
ap_stacks:
	.skip MAX_APS << AP_STACK_SHIFT

	.section .note.GNU-stack, "", @progbits

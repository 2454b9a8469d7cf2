/* exit_now: the smallest PVH guest, for boot-time benchmarks. The first
 * instructions write boot marker 0x01 to port 0x80 and 0 to the
 * isa-debug-exit port (exit status 1); no runtime, no long mode. Also
 * given a Multiboot entry so both image formats can be timed. */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4, 4, 18          /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long pvh_entry

	.section .text.boot32, "ax"
	.code32
	.globl pvh_entry, mb_entry
pvh_entry:
mb_entry:
	movb $0x01, %al         /* boot marker (BOOT_MARKER_ENTRY): the VMM logs its time */
	outb %al, $0x80
	xorl %eax, %eax
	outb %al, $0xf4
1:	cli
	hlt
	jmp 1b

	/* Keeps the RW PT_LOAD non-empty: an empty one at vaddr 0 confuses loaders. */
	.data
	.long 0

	.section .note.GNU-stack, "", @progbits

/* Privilege switches: run_user() drops to ring 3 with iretq and comes back
 * through the VEC_USER_RETURN gate; kernel_call() lets ring-3 code run one
 * function at CPL 0 through the VEC_KERNEL_CALL gate; exception stubs hand
 * a frame to exception_handler() in cpu.c. */
#include "boot_defs.h"

	.text
	.code64

/* uint64_t run_user(uint64_t (*fn)(uint64_t), uint64_t arg)
 * Saves the callee-saved registers and RSP, builds an iretq frame for CPL 3
 * (user CS/SS, IOPL 3, a user stack whose return address is
 * user_return_stub) and jumps. Not reentrant: one ring-3 call at a time. */
	.globl run_user
run_user:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, run_user_saved_rsp(%rip)
	leaq user_stack_top(%rip), %rax
	subq $8, %rax
	leaq user_return_stub(%rip), %rcx
	movq %rcx, (%rax)
	pushq $(SEL_UDATA | 3)
	pushq %rax
	pushq $RFLAGS_USER
	pushq $(SEL_UCODE64 | 3)
	pushq %rdi
	movq %rsi, %rdi
	iretq

/* The gates back to CPL 0 are ud2 instructions at known addresses:
 * exception_handler() (cpu.c) recognises the #UD's RIP. Not int n: under
 * the nested hypervisor on our development hosts `int n` from ring 3 raises
 * #UD itself, while exceptions are delivered normally.
 *
 * Ring 3: fn returned here with its result in RAX. */
	.globl user_return_ud2
user_return_stub:
user_return_ud2:
	ud2

/* CPL 0, called from exception_handler on the TSS RSP0 stack with RDI =
 * fn's result: abandon the exception frame and return from run_user(). */
	.globl user_return_resume
user_return_resume:
	movl $SEL_KDATA, %ecx
	movl %ecx, %ss
	movl %ecx, %ds
	movl %ecx, %es
	movq %rdi, %rax
	movq run_user_saved_rsp(%rip), %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	ret

/* uint64_t kernel_call(uint64_t (*fn)(uint64_t), uint64_t arg), from ring 3:
 * exception_handler calls fn(arg) at CPL 0, puts the result in RAX and
 * resumes after the ud2. */
	.globl kernel_call, kernel_call_ud2
kernel_call:
kernel_call_ud2:
	ud2
	ret

/* Exceptions 0-31: push a zero error code where the CPU does not push one,
 * then the vector, then all GPRs (struct exception_frame in runtime.h). */
	.macro EXC vec, has_err
	.globl exc_stub_\vec
exc_stub_\vec:
	.if \has_err == 0
	pushq $0
	.endif
	pushq $\vec
	jmp exception_common
	.endm

	EXC 0, 0
	EXC 1, 0
	EXC 2, 0
	EXC 3, 0
	EXC 4, 0
	EXC 5, 0
	EXC 6, 0
	EXC 7, 0
	EXC 8, 1
	EXC 9, 0
	EXC 10, 1
	EXC 11, 1
	EXC 12, 1
	EXC 13, 1
	EXC 14, 1
	EXC 15, 0
	EXC 16, 0
	EXC 17, 1
	EXC 18, 0
	EXC 19, 0
	EXC 20, 0
	EXC 21, 1
	EXC 22, 0
	EXC 23, 0
	EXC 24, 0
	EXC 25, 0
	EXC 26, 0
	EXC 27, 0
	EXC 28, 0
	EXC 29, 1
	EXC 30, 1
	EXC 31, 0

/* External interrupts, vectors 32-255: one 16-byte stub each at
 * irq_stubs + 16 * (vector - 32), pushing the same frame as an exception
 * without an error code. set_interrupt_handler() (cpu.c) points a vector's
 * IDT gate at its stub; exception_handler() dispatches on the vector. */
	.balign 16
	.globl irq_stubs
irq_stubs:
	.set irq_vec, 32
	.rept 224
	.balign 16
	pushq $0
	pushq $irq_vec
	jmp exception_common
	.set irq_vec, irq_vec + 1
	.endr

exception_common:
	pushq %rbx
	pushq %rax
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	movl $SEL_KDATA, %eax
	movl %eax, %ss
	movq %rsp, %rdi
	movq %rsp, %rbx
	andq $-16, %rsp
	call exception_handler
	/* The handler returns only for a kernel_call: resume the caller. */
	movq %rbx, %rsp
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rax
	popq %rbx
	addq $16, %rsp          /* vector, error code */
	iretq

	.data
	.balign 8
run_user_saved_rsp:
	.quad 0

	.section .stack, "aw", @nobits  /* not in .bss: see boot.S */
	.balign 16
	.globl intr_stack_top
	.skip USER_STACK_SIZE
user_stack_top:
	.skip INTR_STACK_SIZE
intr_stack_top:

	.section .note.GNU-stack, "", @progbits

	.section .rodata
	.balign 8
	.globl exc_stub_table
exc_stub_table:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad exc_stub_\v
	.endr
	.section .note.GNU-stack, "", @progbits

// Runtime entry points. This code runs in ring 3 under PVM and, on hardware
// KVM, in ring 0 after a `syscall`; it works in both (it tests CS & 3 where
// the two differ: the return to the program).
#include "guest-init/asm_constants.h"

    .text
    .code64

// The VMM starts the runtime here, in ring 3, with rdi = boot info GPA.
    .globl ember_runtime_entry
ember_runtime_entry:
    lea ember_runtime_stack_top(%rip), %rsp
    xor %ebp, %ebp
    cld
    call ember_runtime_main
    ud2

// LSTAR. rcx = return RIP, r11 = RFLAGS, rsp = the program's stack (maybe
// with a red zone below it: nothing is written there). Linux preserves every
// register but rax (result), rcx and r11; the dispatcher is C++ and may
// clobber the SysV caller-saved ones, so rdi..r9 are saved here. The C++
// side is integer-only, so no vector state needs saving.
//
// Nesting: a signal handler the runtime calls synchronously may make
// syscalls itself. Outside handlers (ember_signal_depth == 0) every syscall
// starts at the top of the runtime stack; inside one, below everything the
// interrupted syscall still uses (ember_kstack, set by ember_call_on_stack).
// A handler that never returns (siglongjmp) is noticed by the dispatcher,
// which lowers the depth again (signals.cc).
    .globl ember_syscall_entry
ember_syscall_entry:
    mov %rsp, ember_user_rsp(%rip)
    cmpl $0, ember_signal_depth(%rip)
    jne 1f
    lea ember_runtime_stack_top(%rip), %rsp
    jmp 2f
1:  mov ember_kstack(%rip), %rsp
2:
    pushq ember_user_rsp(%rip)      // frame: user_rsp
    push %r11                       //        rflags
    push %rcx                       //        rip
    push %rdi
    push %rsi
    push %rdx
    push %r10
    push %r8
    push %r9                        // <- SyscallFrame*
    sub $8, %rsp                    // 16-byte alignment for the call
    mov %rax, %rdi
    lea 8(%rsp), %rsi
    call ember_syscall
    add $8, %rsp
    pop %r9
    pop %r8
    pop %r10
    pop %rdx
    pop %rsi
    pop %rdi
    mov %cs, %ecx
    test $3, %cl                    // pops below keep the flags
    pop %rcx
    pop %r11
    jz 3f
    // Ring 3 (PVM): sysretq would #GP. Restore flags from the runtime
    // stack, then the program's rsp, then jump.
    push %r11
    popfq
    pop %rsp
    jmp *%rcx
3:  // Ring 0 (hardware): the usual way back.
    pop %rsp
    sysretq

// The runtime's one int3 site (the nucleus checks the return address).
// ember_gate_wait(const volatile uint16_t* word, uint32_t seen)
    .globl ember_gate_wait
ember_gate_wait:
    xor %ecx, %ecx
    jmp ember_gate
// ember_gate_set_fs(uint64_t base)
    .globl ember_gate_set_fs
ember_gate_set_fs:
    mov %edi, %eax
    mov %rdi, %rdx
    shr $32, %rdx
    mov $EMBER_GATE_SET_FS, %ecx
    jmp ember_gate
// ember_gate_invlpg(uint64_t address)
    .globl ember_gate_invlpg
ember_gate_invlpg:
    mov $EMBER_GATE_INVLPG, %ecx
    jmp ember_gate
// ember_gate_timed_wait(const volatile uint16_t* word, uint32_t seen, uint64_t tsc_deadline)
    .globl ember_gate_timed_wait
ember_gate_timed_wait:
    mov %edx, %eax
    shr $32, %rdx
    mov $EMBER_GATE_TIMED_WAIT, %ecx
    jmp ember_gate
// ember_gate_pvh_exit(uint32_t status): does not return
    .globl ember_gate_pvh_exit
ember_gate_pvh_exit:
    mov %edi, %eax
    mov $EMBER_GATE_PVH_EXIT, %ecx
ember_gate:
    int3
    .globl ember_gate_return
ember_gate_return:
    ret

// ember_enter_program(uint64_t entry, uint64_t sp): no return. The ELF ABI
// start state: rsp -> argc, rdx = 0 (no rtld fini), DF clear, the other
// registers zero.
    .globl ember_enter_program
ember_enter_program:
    mov %rsi, %rsp
    mov %rdi, %r11
    xor %eax, %eax
    xor %ebx, %ebx
    xor %ecx, %ecx
    xor %edx, %edx
    xor %esi, %esi
    xor %edi, %edi
    xor %ebp, %ebp
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r10d, %r10d
    xor %r12d, %r12d
    xor %r13d, %r13d
    xor %r14d, %r14d
    xor %r15d, %r15d
    cld
    jmp *%r11

// uint64_t ember_call_on_stack(fn, a0, a1, a2, stack_top): calls fn(a0, a1,
// a2) with rsp = stack_top (16-byte aligned): signal handlers run on the
// program's stack, not on the runtime's. Syscalls the handler makes start
// below this frame (ember_kstack); the old value comes back afterwards.
    .globl ember_call_on_stack
ember_call_on_stack:
    push %rbp
    mov %rsp, %rbp
    pushq ember_kstack(%rip)
    sub $8, %rsp                    // keeps ember_kstack 16-byte aligned
    mov %rsp, ember_kstack(%rip)
    mov %r8, %rsp
    mov %rdi, %rax
    mov %rsi, %rdi
    mov %rdx, %rsi
    mov %rcx, %rdx
    call *%rax
    mov -8(%rbp), %rcx
    mov %rcx, ember_kstack(%rip)
    mov %rbp, %rsp
    pop %rbp
    ret

    .data
    .balign 8
    .globl ember_user_rsp
ember_user_rsp:
    .quad 0
    .globl ember_kstack
ember_kstack:
    .quad ember_runtime_stack_top
    .globl ember_signal_depth
ember_signal_depth:
    .long 0

    .bss
    .balign 16
    .globl ember_runtime_stack
ember_runtime_stack:
    .skip EMBER_RUNTIME_STACK_SIZE
    .globl ember_runtime_stack_top
ember_runtime_stack_top:

// ELF notes. "Ember": the GuestNote (api/boot_info.h) with link-time
// addresses, so the VMM can build IDT and MSRs before the first guest
// instruction. "Xen" type 18: the PVH 32-bit entry for QEMU & co.
    .section .note.ember, "a", @note
    .balign 4
    .long 2f - 1f                   // namesz
    .long 4f - 3f                   // descsz
    .long 0x454d4231                // kGuestNoteType
1:  .asciz "Ember"
2:  .balign 4
3:  .long 1                         // abi_version
    .long 0
    .quad ember_runtime_entry
    .quad ember_syscall_entry
    .quad ember_wait_gate
    .quad ember_irq_handler
    .quad ember_fault_table
4:  .balign 4

    .section .note.xen, "a", @note
    .balign 4
    .long 2f - 1f
    .long 4f - 3f
    .long 18                        // XEN_ELFNOTE_PHYS32_ENTRY
1:  .asciz "Xen"
2:  .balign 4
3:  .long ember_pvh_entry
4:  .balign 4

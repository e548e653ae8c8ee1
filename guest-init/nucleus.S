// The nucleus: every instruction the guest executes in ring 0 under
// ember-vmm. Under PVM each one is emulated (~0.55 us), so this file is
// deliberately tiny and integer-only (check_ring0_opcodes.sh enforces the
// opcode rules of PLATFORM.md at build time).
//
//   ember_wait_gate     vector 3 (int3, DPL3, IST1): the runtime's one way in
//   ember_irq_handler   vectors 32..255 (IST2): xAPIC EOI, iretq
//   ember_fault_N       vectors 0..31 (IST3/IST4): report the vector, stop
//   ember_fault_table   uint64_t[32], named by the GuestNote
//
// Instruction counts (ring 0, per entry):
//   wait, data already there:        7 (cmpq, jne, test, jnz, cmp, jne, iretq)
//   wait, halts:                     8, then on wake-up the irq handler's 3
//                                    and the iretq after hlt: 12 in all
//   set FS base:                     8 (arch_prctl(ARCH_SET_FS), once per boot)
//   invlpg:                         10 (once per boot, glibc-sized programs)
//   timed wait (sleeps):            17, then 4 on wake-up
//   interrupt:                       3
//   fault:                           3 (then the VMM ends the VM)
#include "guest-init/asm_constants.h"

    .section .text.nucleus, "ax"
    .code64

// int3 gate. Only the runtime's own int3 site (ember_gate_return is the
// address right after it, which the CPU pushes as RIP) may use it; a
// program's own int3 is a SIGTRAP. The operation is in ecx:
//   0               wait: if the u16 at (rdi) still equals si, sti; hlt
//                   (IF is clear from the interrupt gate until sti, and
//                   sti's shadow covers hlt, so an interrupt that arrived
//                   after ring 3 re-checked the ring cannot be lost)
//   MSR_FS_BASE     wrmsr edx:eax into FS base (arch_prctl(ARCH_SET_FS))
//   2               invlpg (rdi): after the runtime changed a page-table
//                   entry (program segments mapped from the image)
//   3               timed wait: arm the LAPIC TSC-deadline timer with
//                   edx:eax, then wait as op 0 (sleeps that do not spin)
//   1               PVH only: status eax to the isa-debug-exit port, then
//                   a triple fault
    .globl ember_wait_gate
ember_wait_gate:
    cmpq $ember_gate_return, (%rsp)
    jne 3f
    test %ecx, %ecx
    jnz 1f
    cmp %si, (%rdi)
    jne 2f
    sti
    hlt
2:  iretq
1:  cmp $EMBER_MSR_FS_BASE, %ecx
    jne 4f
    wrmsr
    iretq
4:  cmp $EMBER_GATE_INVLPG, %ecx
    jne 5f
    invlpg (%rdi)
    iretq
5:  cmp $EMBER_GATE_TIMED_WAIT, %ecx
    jne 6f
    mov $EMBER_MSR_TSC_DEADLINE, %ecx
    wrmsr
    cmp %si, (%rdi)
    jne 2b
    sti
    hlt
    iretq
6:  out %eax, $EMBER_PVH_EXIT_PORT
    lidt ember_null_idtr(%rip)
    ud2
3:  jmp *(ember_fault_table + 3 * 8)(%rip)

// Device interrupts: count the wake-up, acknowledge; whoever waited re-reads
// its rings. The counter (ember_wake_count) lets the runtime wait on several
// sources at once without losing a wake-up: it reads the counter, checks
// every source, and passes the value it read to the wait gate, which halts
// only if no interrupt came in between. The 0x67 prefix makes the absolute
// address 32-bit and zero-extended (a plain disp32 of 0xfee000b0 would be
// sign-extended to 0xfffffffffee000b0), so the EOI is one instruction and
// no register is touched (verified under PVM's emulator and in QEMU).
    .globl ember_irq_handler
ember_irq_handler:
    incw ember_wake_count(%rip)
    addr32 movl $0, EMBER_LAPIC_EOI
    iretq

// Exceptions: one MMIO write tells the VMM the vector (it reads RIP, CR2 and
// the frame itself and ends the VM with 128 + signal). rax is saved first so
// the VMM sees the program's rax at [rsp].
    .globl ember_fault_halt
ember_fault_halt:
    hlt
    jmp ember_fault_halt

.macro FAULT_STUB vec
    .globl ember_fault_\vec
ember_fault_\vec:
    push %rax
    movabs $EMBER_CONTROL_FAULT_GPA, %rax
    movl $\vec, (%rax)
    jmp ember_fault_halt
.endm

.altmacro
.set vec, 0
.rept 32
    FAULT_STUB %vec
    .set vec, vec + 1
.endr

// The table lives in .data: the PVH entry replaces the entries with stubs
// that report through the isa-debug-exit port instead (no control page).
    .section .data.nucleus, "aw"
    .balign 8
    .globl ember_fault_table
ember_fault_table:
.macro FAULT_ENTRY vec
    .quad ember_fault_\vec
.endm
.set vec, 0
.rept 32
    FAULT_ENTRY %vec
    .set vec, vec + 1
.endr

    .balign 2
    .globl ember_wake_count
ember_wake_count:
    .word 0

    .section .rodata.nucleus, "a"
    .balign 16
    .globl ember_null_idtr
ember_null_idtr:
    .word 0
    .quad 0

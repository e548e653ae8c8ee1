// PVH entry (Xen ELF note PHYS32_ENTRY): how QEMU -M microvm, Firecracker
// and Cloud Hypervisor start a kernel. 32-bit protected mode, paging off,
// ebx = struct hvm_start_info. Nobody prepared anything, so this path does
// in ring 0 what ember-vmm does before the first instruction: bootstrap
// paging, 64-bit mode, then ember_pvh_main (C++) builds the real tables with
// api/boot_tables.h and the boot info, and ember_pvh_enter loads them and
// drops to the runtime in ring 3. Hardware semantics (QEMU TCG): speed here
// does not matter.
#include "guest-init/asm_constants.h"

    .section .text32, "ax"
    .code32
    .globl ember_pvh_entry
ember_pvh_entry:
    cli
    cld
    mov %ebx, %esi
    // .bss is zero when a loader follows the ELF rules; make sure anyway
    // (the bootstrap tables and stack live there).
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb
    mov $pvh_stack_top, %esp
    // Identity-map 0-4 GiB with 2 MiB pages.
    mov $pvh_pdpt, %eax
    or $3, %eax
    mov %eax, pvh_pml4
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $12, %eax
    add $pvh_pd, %eax
    or $3, %eax
    mov %eax, pvh_pdpt(,%ecx,8)
    inc %ecx
    cmp $4, %ecx
    jne 1b
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax                  // P | RW | PS
    mov %eax, pvh_pd(,%ecx,8)
    mov %ecx, %eax
    shr $11, %eax                   // bits 32+ of the address
    mov %eax, pvh_pd+4(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jne 2b
    mov $EMBER_CR4, %eax
    mov %eax, %cr4
    mov $pvh_pml4, %eax
    mov %eax, %cr3
    mov $EMBER_MSR_EFER, %ecx
    rdmsr
    or $EMBER_EFER_WRITE, %eax
    wrmsr
    mov $EMBER_CR0, %eax
    mov %eax, %cr0
    lgdt pvh_gdtr
    ljmp $EMBER_SEL_KERNEL_CODE, $pvh_long

    .text
    .code64
pvh_long:
    mov $EMBER_SEL_KERNEL_DATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov $pvh_stack_top, %esp
    mov %esi, %edi
    call ember_pvh_main             // builds tables + boot info at low memory
    // Load what api/boot_tables.h built.
    lgdt pvh_final_gdtr(%rip)
    lea 3f(%rip), %rax
    push $EMBER_SEL_KERNEL_CODE
    push %rax
    lretq
3:  mov $EMBER_SEL_KERNEL_DATA, %eax
    mov %eax, %ss
    mov $EMBER_SEL_USER_DATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %fs
    mov %eax, %gs
    mov $EMBER_SEL_TSS, %eax
    ltr %ax
    lidt pvh_final_idtr(%rip)
    mov $EMBER_PML4_GPA, %eax
    mov %rax, %cr3
    mov $EMBER_MSR_STAR, %ecx
    xor %eax, %eax
    mov $EMBER_STAR_HI, %edx
    wrmsr
    mov $EMBER_MSR_LSTAR, %ecx
    lea ember_syscall_entry(%rip), %rax
    xor %edx, %edx
    wrmsr
    mov $EMBER_MSR_SFMASK, %ecx
    mov $EMBER_SFMASK, %eax
    xor %edx, %edx
    wrmsr
    mov $EMBER_LAPIC_SVR, %eax      // xAPIC on (software enable, spurious 0xff)
    movl $0x1ff, (%rax)
    // Into the runtime, ring 3, exactly as ember-vmm would start it.
    push $EMBER_SEL_USER_DATA
    push $0
    push $EMBER_USER_RFLAGS
    push $EMBER_SEL_USER_CODE
    lea ember_runtime_entry(%rip), %rax
    push %rax
    mov $EMBER_BOOT_INFO_GPA, %edi
    iretq

// PVH fault stubs: no control page here; exit QEMU with 128 + signal through
// isa-debug-exit (QEMU's own status is then (value << 1) | 1).
    .globl ember_pvh_die
ember_pvh_die:                      // eax = status
    out %eax, $EMBER_PVH_EXIT_PORT
    lidt ember_null_idtr(%rip)
    ud2

.macro PVH_FAULT vec, sig
    .globl ember_pvh_fault_\vec
ember_pvh_fault_\vec:
    mov $(128 + \sig), %eax
    jmp ember_pvh_die
.endm
.altmacro
.set vec, 0
.rept 32
  .if vec == 0 || vec == 16 || vec == 19
    PVH_FAULT %vec, 8
  .elseif vec == 1 || vec == 3
    PVH_FAULT %vec, 5
  .elseif vec == 6
    PVH_FAULT %vec, 4
  .elseif vec == 17
    PVH_FAULT %vec, 7
  .else
    PVH_FAULT %vec, 11
  .endif
  .set vec, vec + 1
.endr

    .section .rodata.pvh, "a"
    .balign 8
    .globl ember_pvh_fault_table
ember_pvh_fault_table:
.macro PVH_ENTRY vec
    .quad ember_pvh_fault_\vec
.endm
.set vec, 0
.rept 32
    PVH_ENTRY %vec
    .set vec, vec + 1
.endr

    .balign 16
pvh_gdt:
    .quad 0
    .quad 0x00af9b000000ffff        // 0x08: 64-bit code
    .quad 0x00cf93000000ffff        // 0x10: data
pvh_gdtr:
    .word 3 * 8 - 1
    .quad pvh_gdt
    .balign 16
pvh_final_gdtr:
    .word 8 * 8 - 1                 // 6 descriptors + the 16-byte TSS descriptor
    .quad EMBER_GDT_GPA
    .balign 16
pvh_final_idtr:
    .word 256 * 16 - 1
    .quad EMBER_IDT_GPA

    .bss
    .balign 4096
pvh_pml4:   .skip 4096
pvh_pdpt:   .skip 4096
pvh_pd:     .skip 4 * 4096
pvh_stack:  .skip 16384
pvh_stack_top:

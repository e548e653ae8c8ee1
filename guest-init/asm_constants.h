// Constants shared by the guest's assembly (.S) and C++ files. Plain
// #defines so that the assembler can use them; constants.cc checks each one
// against api/ with static_assert, so api/ stays the single source of truth.
#pragma once

#define EMBER_KERNEL_BASE 0x100000
#define EMBER_PROGRAM_MIN 0x400000
#define EMBER_BOOT_INFO_GPA 0x4000
#define EMBER_CONTROL_FAULT_GPA 0xd000000c  // kControlGpa + kControlFault
#define EMBER_LAPIC_EOI 0xfee000b0          // kLapicGpa + EOI register
#define EMBER_LAPIC_SVR 0xfee000f0          // kLapicGpa + spurious-interrupt vector register
#define EMBER_MSR_FS_BASE 0xc0000100
#define EMBER_MSR_EFER 0xc0000080
#define EMBER_MSR_STAR 0xc0000081
#define EMBER_MSR_LSTAR 0xc0000082
#define EMBER_MSR_SFMASK 0xc0000084
#define EMBER_GDT_GPA 0x1000
#define EMBER_IDT_GPA 0x2000
#define EMBER_PML4_GPA 0x8000
#define EMBER_SEL_KERNEL_CODE 0x08
#define EMBER_SEL_KERNEL_DATA 0x10
#define EMBER_SEL_USER_DATA 0x23
#define EMBER_SEL_USER_CODE 0x2b
#define EMBER_SEL_TSS 0x30
#define EMBER_CR0 0x80050033
#define EMBER_CR4 0x00000620
#define EMBER_EFER_WRITE 0x101  // LME | SCE (LMA is set by the CPU)
#define EMBER_STAR_HI 0x00180008  // kStar >> 32
#define EMBER_SFMASK 0x47500
#define EMBER_USER_RFLAGS 0x202

// Wait-gate operations (ecx at the runtime's one int3 site, see entry.S).
#define EMBER_GATE_WAIT 0           // rdi = address of a u16, esi = value seen: halt while equal
#define EMBER_GATE_PVH_EXIT 1       // eax = status: isa-debug-exit port, then triple fault (PVH only)
#define EMBER_GATE_SET_FS EMBER_MSR_FS_BASE  // edx:eax = new FS base
#define EMBER_GATE_INVLPG 2         // rdi = address: drop its TLB entry (after a page-table change)
#define EMBER_GATE_TIMED_WAIT 3     // edx:eax = TSC deadline, then as EMBER_GATE_WAIT
#define EMBER_MSR_TSC_DEADLINE 0x6e0

#define EMBER_PVH_EXIT_PORT 0xf4
#define EMBER_RUNTIME_STACK_SIZE 0x10000

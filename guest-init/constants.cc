// asm_constants.h duplicates a few api/ values for the assembler; this file
// checks every one of them at compile time.
#include "api/boot_info.h"
#include "api/control.h"
#include "api/guest_layout.h"
#include "guest-init/asm_constants.h"
#include "guest-init/syscalls.h"

namespace ember::guest {
using namespace abi;
static_assert(EMBER_KERNEL_BASE == kKernelMin);
static_assert(EMBER_PROGRAM_MIN == kProgramMin);
static_assert(EMBER_BOOT_INFO_GPA == kBootInfoGpa);
static_assert(EMBER_CONTROL_FAULT_GPA == kControlGpa + kControlFault);
static_assert(EMBER_LAPIC_EOI == kLapicGpa + 0xb0);
static_assert(EMBER_LAPIC_SVR == kLapicGpa + 0xf0);
static_assert(EMBER_MSR_FS_BASE == kMsrFsBase);
static_assert(EMBER_MSR_EFER == kMsrEfer);
static_assert(EMBER_MSR_STAR == kMsrStar);
static_assert(EMBER_MSR_LSTAR == kMsrLstar);
static_assert(EMBER_MSR_SFMASK == kMsrSfmask);
static_assert(EMBER_GDT_GPA == kGdtGpa);
static_assert(EMBER_IDT_GPA == kIdtGpa);
static_assert(EMBER_PML4_GPA == kPml4Gpa);
static_assert(EMBER_SEL_KERNEL_CODE == kSelKernelCode);
static_assert(EMBER_SEL_KERNEL_DATA == kSelKernelData);
static_assert(EMBER_SEL_USER_DATA == kSelUserData);
static_assert(EMBER_SEL_USER_CODE == kSelUserCode);
static_assert(EMBER_SEL_TSS == kSelTss);
static_assert(EMBER_CR0 == kCr0);
static_assert(EMBER_CR4 == kCr4);
static_assert((EMBER_EFER_WRITE | 0x400) == kEfer);
static_assert(uint64_t{EMBER_STAR_HI} << 32 == kStar);
static_assert(EMBER_SFMASK == kSfmask);
static_assert(EMBER_USER_RFLAGS == kUserRflags);
static_assert(kWaitVector == 3);
// entry.S's frame layout.
static_assert(sizeof(SyscallFrame) == 9 * 8);
}  // namespace ember::guest

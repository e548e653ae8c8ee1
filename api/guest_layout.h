// The guest-physical memory map that the VMM and the guest agree on.
//
// Freestanding: included by the host (vmm/) and by the guest kernel
// (guest-init/), so only <stdint.h>-level C++ here. Every constant that both
// sides must agree on lives in this header and nowhere else.
//
//   0x0000_0000  page 0: never mapped (NULL dereferences fault)
//   0x0000_1000  GDT                      (kGdtGpa)
//   0x0000_2000  IDT, 256 gates           (kIdtGpa)
//   0x0000_3000  TSS                      (kTssGpa)
//   0x0000_4000  boot info, 4 KiB         (kBootInfoGpa, api/boot_info.h)
//   0x0000_8000  page tables              (kPml4Gpa .. kPdImageGpa)
//   0x0001_0000  virtqueue area           (kVirtqueueAreaGpa, 8 devices x 4 queues)
//   0x0007_0000  ring-0 IST stacks        (kIst*Top)
//   0x0010_0000  guest kernel ELF (nucleus + runtime), must end below kProgramMin
//   0x0040_0000  program, brk, mmap, stack ... up to mem_size
//   0xd000_0000  MMIO: Ember control page, then virtio-mmio devices
//   0xfee0_0000  local APIC (xAPIC MMIO)
//   0x1_0000_0000  the function image, a read-only memory slot (kImageGpa)
#pragma once

#include <stdint.h>

namespace ember::abi {

inline constexpr uint64_t kPageSize = 0x1000;
inline constexpr uint64_t kHugePageSize = 0x200000;

inline constexpr uint64_t kGdtGpa = 0x1000;
inline constexpr uint64_t kIdtGpa = 0x2000;
inline constexpr uint64_t kTssGpa = 0x3000;
inline constexpr uint64_t kBootInfoGpa = 0x4000;

// Page tables: one PML4, one PDPT, PDs for 0-4 GiB (2 MiB pages), one 4 KiB
// table for the first 2 MiB (so that page 0 can stay unmapped), one PD for the
// image slot at 4-5 GiB.
inline constexpr uint64_t kPml4Gpa = 0x8000;
inline constexpr uint64_t kPdptGpa = 0x9000;
inline constexpr uint64_t kPdLowGpa = 0xa000;  // 4 pages: 0xa000..0xdfff
inline constexpr uint64_t kPtFirst2MGpa = 0xe000;
inline constexpr uint64_t kPdImageGpa = 0xf000;

// Virtqueues live at fixed places so that the VMM can configure them before
// the first guest instruction (no MMIO exits at boot) and the guest finds
// them without being told. Device d, queue q: kVirtqueueAreaGpa +
// (d * kQueuesPerDevice + q) * kQueueStride; descriptor table at +0, avail
// ring at +0x1000, used ring at +0x2000.
inline constexpr uint64_t kVirtqueueAreaGpa = 0x10000;
inline constexpr uint32_t kMaxDevices = 8;
inline constexpr uint32_t kQueuesPerDevice = 4;
inline constexpr uint16_t kQueueSize = 256;
inline constexpr uint64_t kQueueStride = 0x3000;
inline constexpr uint64_t kQueueAvailOffset = 0x1000;
inline constexpr uint64_t kQueueUsedOffset = 0x2000;
inline constexpr uint64_t kVirtqueueAreaEnd =
    kVirtqueueAreaGpa + uint64_t{kMaxDevices} * kQueuesPerDevice * kQueueStride;  // 0x70000
static_assert(kVirtqueueAreaEnd == 0x70000);
static_assert(16 * kQueueSize <= kQueueAvailOffset, "descriptor table fits");
static_assert(6 + 2 * kQueueSize <= kQueueUsedOffset - kQueueAvailOffset, "avail ring fits");
static_assert(6 + 8 * kQueueSize <= kQueueStride - kQueueUsedOffset, "used ring fits");

constexpr uint64_t queue_gpa(uint32_t device_index, uint32_t queue_index) {
  return kVirtqueueAreaGpa + (uint64_t{device_index} * kQueuesPerDevice + queue_index) * kQueueStride;
}

// Ring-0 stacks, one per IST slot, so that ring 0 never runs on a stack the
// program owns (on hardware a ring-0 syscall entry still has the user RSP).
inline constexpr uint64_t kIstWaitTop = 0x74000;   // IST1: the wait gate (int3)
inline constexpr uint64_t kIstIrqTop = 0x78000;    // IST2: device interrupts
inline constexpr uint64_t kIstFaultTop = 0x7c000;  // IST3: exceptions
inline constexpr uint64_t kIstDoubleTop = 0x80000; // IST4: NMI, #DF, #MC

inline constexpr uint64_t kKernelMin = 0x100000;
inline constexpr uint64_t kProgramMin = 0x400000;  // kernel segments end below this

inline constexpr uint64_t kMmioBase = 0xd0000000;       // 2 MiB window, mapped uncached
inline constexpr uint64_t kControlGpa = kMmioBase;      // api/control.h
inline constexpr uint64_t kVirtioMmioBase = kMmioBase + 0x1000;
inline constexpr uint64_t kVirtioMmioStride = 0x1000;
inline constexpr uint64_t kLapicGpa = 0xfee00000;
inline constexpr uint64_t kIoapicGpa = 0xfec00000;

// RAM is [0, mem_size); it must stay below the MMIO hole.
inline constexpr uint64_t kMaxMemSize = 0xc0000000;  // 3 GiB
inline constexpr uint64_t kMinMemSize = 16ull << 20;

// The image is a read-only memory slot of the VMM's (mapped from the image
// file, shared page cache across VMs); under PVH boots it is the initrd module
// wherever the loader put it, so the guest always takes the address from the
// boot info.
inline constexpr uint64_t kImageGpa = 0x100000000ull;
inline constexpr uint64_t kMaxImageSize = 1ull << 30;

// GDT selectors. The order makes STAR work for both syscall and sysret:
// STAR[47:32] = kernel CS (data = +8), STAR[63:48] = 0x18 so that sysret
// loads CS = 0x18 + 16 = 0x28 | 3 and SS = 0x18 + 8 = 0x20 | 3.
inline constexpr uint16_t kSelKernelCode = 0x08;
inline constexpr uint16_t kSelKernelData = 0x10;
inline constexpr uint16_t kSelUserCode32 = 0x18;
inline constexpr uint16_t kSelUserData = 0x20 | 3;
inline constexpr uint16_t kSelUserCode = 0x28 | 3;
inline constexpr uint16_t kSelTss = 0x30;

// Interrupt vectors. Device i raises kDeviceVectorBase + i (MSI route on the
// VMM side; the guest's handler for every vector >= 32 is "EOI, iretq").
inline constexpr uint8_t kDeviceVectorBase = 0x30;
inline constexpr uint8_t kWaitVector = 3;  // int3: the only DPL3 gate that works under PVM

// Control registers and MSR values the VMM loads (and the PVH path writes).
inline constexpr uint64_t kCr0 = 0x80050033;  // PG | WP | NE | ET | MP | PE
inline constexpr uint64_t kCr4 = 0x00000620;  // OSXMMEXCPT | OSFXSR | PAE (no SMEP/SMAP: ring 0 runs the runtime on hardware)
inline constexpr uint64_t kEfer = 0x501;      // LMA | LME | SCE (no NX: keep the CPUID needs minimal)
inline constexpr uint32_t kMsrEfer = 0xc0000080;
inline constexpr uint32_t kMsrStar = 0xc0000081;
inline constexpr uint32_t kMsrLstar = 0xc0000082;
inline constexpr uint32_t kMsrSfmask = 0xc0000084;
inline constexpr uint32_t kMsrFsBase = 0xc0000100;
inline constexpr uint32_t kMsrGsBase = 0xc0000101;
inline constexpr uint32_t kMsrKernelGsBase = 0xc0000102;
inline constexpr uint32_t kMsrPat = 0x277;
inline constexpr uint64_t kStar = (uint64_t{kSelUserCode32} << 48) | (uint64_t{kSelKernelCode} << 32);
// SFMASK must not clear IF: under PVM a ring-3 syscall with IF masked leaves
// interrupts off until a ring-0 iretq (PLATFORM.md). TF, DF, AC, NT, IOPL.
inline constexpr uint64_t kSfmask = 0x47500;
inline constexpr uint64_t kUserRflags = 0x202;  // IF, reserved bit 1

}  // namespace ember::abi

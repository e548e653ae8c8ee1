// Builds the guest's initial system tables (GDT, TSS, IDT, page tables) into
// low guest memory. One builder, two callers: the VMM (before the first guest
// instruction, so boot costs no ring-0 instructions) and the guest's PVH entry
// (when another VMM boots it and nobody prepared anything).
//
// Freestanding and header-only: plain stores into a byte window, no libc.
#pragma once

#include <stdint.h>

#include "api/boot_info.h"
#include "api/guest_layout.h"

namespace ember::abi {

struct BootTablesSpec {
  uint64_t mem_size;        // multiple of kHugePageSize, <= kMaxMemSize
  uint64_t image_gpa;       // 0 if the image lies inside RAM (already mapped)
  uint64_t image_size;
  const uint64_t* mmio_gpas;  // MMIO ranges to map uncached (each maps its 2 MiB page)
  uint32_t mmio_count;
  GuestNote note;           // handler addresses
};

// Writes the tables. `low` is where guest-physical 0 is visible to the caller
// (a host pointer in the VMM, 0 in the guest before paging); the caller
// guarantees [0, kIstDoubleTop) is writable there. Returns false if the spec
// cannot be mapped (image too large or overlapping RAM, MMIO inside RAM).
inline bool write_boot_tables(uintptr_t low, const BootTablesSpec& spec) {
  auto q = [low](uint64_t gpa) { return reinterpret_cast<volatile uint64_t*>(low + gpa); };
  auto zero_page = [&](uint64_t gpa) {
    for (int i = 0; i < 512; i++) q(gpa)[i] = 0;
  };
  if (spec.mem_size < kMinMemSize || spec.mem_size > kMaxMemSize || spec.mem_size % kHugePageSize) return false;

  // GDT.
  const uint64_t gdt[] = {
      0,
      0x00af9b000000ffffull,  // 0x08 kernel code, 64-bit, DPL0
      0x00cf93000000ffffull,  // 0x10 kernel data
      0x00cffb000000ffffull,  // 0x18 user code, 32-bit (sysret layout placeholder)
      0x00cff3000000ffffull,  // 0x20 user data, DPL3
      0x00affb000000ffffull,  // 0x28 user code, 64-bit, DPL3
  };
  for (unsigned i = 0; i < sizeof(gdt) / 8; i++) q(kGdtGpa)[i] = gdt[i];
  const uint64_t tss_limit = 0x67;
  q(kGdtGpa)[6] = (tss_limit & 0xffff) | ((kTssGpa & 0xffffff) << 16) | (0x89ull << 40) |
                  (((kTssGpa >> 24) & 0xff) << 56);
  q(kGdtGpa)[7] = kTssGpa >> 32;

  // TSS: no privilege-level stacks are used, every gate has an IST.
  auto tss = reinterpret_cast<volatile uint8_t*>(low + kTssGpa);
  for (unsigned i = 0; i < 0x68; i++) tss[i] = 0;
  auto tss_q = [&](unsigned off, uint64_t v) {
    for (unsigned i = 0; i < 8; i++) tss[off + i] = static_cast<uint8_t>(v >> (8 * i));
  };
  tss_q(0x04, kIstFaultTop);   // RSP0 (unused: every gate has an IST)
  tss_q(0x24, kIstWaitTop);    // IST1
  tss_q(0x2c, kIstIrqTop);     // IST2
  tss_q(0x34, kIstFaultTop);   // IST3
  tss_q(0x3c, kIstDoubleTop);  // IST4
  tss[0x66] = 0x68;            // I/O bitmap base beyond the limit: no port access from ring 3

  // IDT: interrupt gates (IF cleared on entry).
  const uint64_t* faults = reinterpret_cast<const uint64_t*>(low + spec.note.fault_handlers);
  for (unsigned v = 0; v < 256; v++) {
    uint64_t handler;
    unsigned ist, dpl = 0;
    if (v == kWaitVector) {
      handler = spec.note.wait_gate, ist = 1, dpl = 3;
    } else if (v < 32) {
      handler = faults[v];
      ist = (v == 2 || v == 8 || v == 18) ? 4 : 3;
    } else {
      handler = spec.note.irq_handler, ist = 2;
    }
    const uint64_t lo = (handler & 0xffff) | (uint64_t{kSelKernelCode} << 16) | (uint64_t{ist} << 32) |
                        (uint64_t{0x8e | (dpl << 5)} << 40) | (((handler >> 16) & 0xffff) << 48);
    q(kIdtGpa)[2 * v] = lo;
    q(kIdtGpa)[2 * v + 1] = handler >> 32;
  }

  // Page tables: identity map RAM (page 0 left out), the MMIO pages
  // (uncached), and the image slot. Everything is user-accessible: the
  // runtime runs in ring 3 (PLATFORM.md), and the VM is the isolation
  // boundary, not the guest's rings. Accessed (and, where writable, Dirty)
  // are set up front: the CPU would set each on first use, a write to the
  // page-table page that makes it private to every restored VM (4 KiB each,
  // copy-on-write of the snapshot) and, under shadow paging (PVM), an exit.
  constexpr uint64_t P = 1, RW = 2, US = 4, PWT = 8, PCD = 16, A = 0x20, D = 0x40, PS = 0x80;
  const uint64_t table_pages[] = {kPml4Gpa,           kPdptGpa,           kPdLowGpa,     kPdLowGpa + 0x1000,
                                  kPdLowGpa + 0x2000, kPdLowGpa + 0x3000, kPtFirst2MGpa, kPdImageGpa};
  for (uint64_t gpa : table_pages) zero_page(gpa);
  q(kPml4Gpa)[0] = kPdptGpa | P | RW | US | A;
  for (unsigned g = 0; g < 4; g++) q(kPdptGpa)[g] = (kPdLowGpa + g * 0x1000) | P | RW | US | A;
  volatile uint64_t* pd = q(kPdLowGpa);  // 2048 entries, 2 MiB each, covering 0-4 GiB
  pd[0] = kPtFirst2MGpa | P | RW | US | A;
  for (uint64_t page = 1; page < 512; page++) q(kPtFirst2MGpa)[page] = (page * kPageSize) | P | RW | US | A | D;
  for (uint64_t a = kHugePageSize; a < spec.mem_size; a += kHugePageSize) pd[a / kHugePageSize] = a | P | RW | US | A | D | PS;
  auto map_mmio = [&](uint64_t gpa) {
    const uint64_t base = gpa & ~(kHugePageSize - 1);
    if (base < spec.mem_size || base >= (4ull << 30)) return false;
    pd[base / kHugePageSize] = base | P | RW | US | A | D | PS | PWT | PCD;
    return true;
  };
  if (!map_mmio(kLapicGpa)) return false;
  for (uint32_t i = 0; i < spec.mmio_count; i++)
    if (!map_mmio(spec.mmio_gpas[i])) return false;
  if (spec.image_gpa != 0) {
    if (spec.image_gpa != kImageGpa || spec.image_size > kMaxImageSize) return false;
    q(kPdptGpa)[4] = kPdImageGpa | P | RW | US | A;
    for (uint64_t off = 0; off < spec.image_size; off += kHugePageSize)
      q(kPdImageGpa)[off / kHugePageSize] = (kImageGpa + off) | P | US | A | PS;  // read-only
  }
  return true;
}

}  // namespace ember::abi

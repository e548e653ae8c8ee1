// x86-64 boot set-up: everything the guest would otherwise do in ring 0 at
// boot is done here, before its first instruction: system tables (via the
// shared api/boot_tables.h builder), the boot-info block, and a vCPU that
// starts directly in 64-bit ring 3 at the runtime's entry.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "api/boot_info.h"
#include "base/result.h"
#include "vmm/elf_loader.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"

namespace ember {

struct BootDevice {
  uint32_t device_id;
  uint32_t role;
  uint32_t queue_count;
};

struct BootParams {
  uint64_t mem_size = 0;
  uint64_t image_gpa = 0;  // 0: no image
  uint64_t image_size = 0;
  uint64_t flags = 0;
  uint64_t tsc_khz = 0;
  uint64_t boot_tsc = 0;
  uint64_t realtime_ns = 0;
  uint8_t random_seed[32] = {};
  std::vector<BootDevice> devices;  // device i sits at kVirtioMmioBase + i * stride, vector base + i
  std::string cmdline;
};

// Pure: the boot-info block for these parameters. Fails if there are too
// many devices or the command line does not fit.
Result<abi::BootInfo> make_boot_info(const BootParams& params);

// GDT, TSS, IDT and page tables into guest RAM (api/boot_tables.h).
Result<void> write_system_tables(const GuestMemory& memory, const KernelImage& kernel, uint64_t image_gpa,
                                 uint64_t image_size);

// Pure: the special registers for 64-bit long mode, ring 3, on Ember's GDT.
// `base` supplies what is not ours to choose (APIC base, interrupt bitmap).
kvm_sregs make_long_mode_sregs(const kvm_sregs& base);
// Pure: the LAPIC enabled in xAPIC mode (SVR 0x1ff, TPR 0, LVTs masked).
kvm_lapic_state make_lapic(const kvm_lapic_state& base);

// CPUID, MSRs, LAPIC, sregs and regs of the boot vCPU.
Result<void> setup_boot_vcpu(Vcpu& vcpu, const Kvm& kvm, const abi::GuestNote& note);

}  // namespace ember

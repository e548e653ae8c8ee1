#include "vmm/boot.h"

#include <cstring>
#include <utility>

#include "api/boot_tables.h"
#include "api/guest_layout.h"

namespace ember {

namespace {

// LAPIC register offsets (Intel SDM vol. 3, 11.4.1).
constexpr uint32_t kApicTpr = 0x80;
constexpr uint32_t kApicSvr = 0xf0;
constexpr uint32_t kApicLvtTimer = 0x320;
constexpr uint32_t kApicLvtLint0 = 0x350;
constexpr uint32_t kApicLvtLint1 = 0x360;
constexpr uint32_t kApicLvtError = 0x370;
constexpr uint32_t kApicLvtMasked = 1u << 16;

constexpr uint64_t kPatDefault = 0x0007040600070406ull;  // the reset value: WB, WT, UC-, UC

void set_apic_reg(kvm_lapic_state& s, uint32_t reg, uint32_t value) { std::memcpy(s.regs + reg, &value, 4); }
uint32_t apic_reg(const kvm_lapic_state& s, uint32_t reg) {
  uint32_t v;
  std::memcpy(&v, s.regs + reg, 4);
  return v;
}

kvm_segment user_segment(uint16_t selector, bool code) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;
  s.selector = selector;
  s.present = 1;
  s.dpl = 3;
  s.s = 1;
  s.g = 1;
  if (code) {
    s.type = 11;  // execute/read, accessed
    s.l = 1;
  } else {
    s.type = 3;  // read/write, accessed
    s.db = 1;
  }
  return s;
}

}  // namespace

Result<abi::BootInfo> make_boot_info(const BootParams& p) {
  abi::BootInfo info{};
  info.magic = abi::kBootInfoMagic;
  info.version = abi::kBootInfoVersion;
  info.size = sizeof(abi::BootInfo);
  info.flags = p.flags;
  info.mem_size = p.mem_size;
  info.image_gpa = p.image_gpa;
  info.image_size = p.image_size;
  info.tsc_khz = p.tsc_khz;
  info.boot_tsc = p.boot_tsc;
  info.realtime_ns = p.realtime_ns;
  info.control_gpa = abi::kControlGpa;
  std::memcpy(info.random_seed, p.random_seed, sizeof info.random_seed);
  if (p.devices.size() > abi::kMaxDevices || p.devices.size() > std::size(info.devices))
    return Error{"too many devices (" + std::to_string(p.devices.size()) + ")"};
  info.device_count = static_cast<uint32_t>(p.devices.size());
  for (size_t i = 0; i < p.devices.size(); i++) {
    abi::VirtioDevice& d = info.devices[i];
    d.gpa = abi::kVirtioMmioBase + i * abi::kVirtioMmioStride;
    d.size = static_cast<uint32_t>(abi::kVirtioMmioStride);
    d.device_id = p.devices[i].device_id;
    d.role = p.devices[i].role;
    d.vector = (p.flags & abi::kBootPollOnly) ? 0 : abi::kDeviceVectorBase + static_cast<uint32_t>(i);
    d.queue_count = p.devices[i].queue_count;
  }
  if (p.cmdline.size() >= abi::kCmdlineMax)
    return Error{"kernel command line too long (" + std::to_string(p.cmdline.size()) + " bytes, max " +
                 std::to_string(abi::kCmdlineMax - 1) + ")"};
  std::memcpy(info.cmdline, p.cmdline.data(), p.cmdline.size());
  return info;
}

Result<void> write_system_tables(const GuestMemory& memory, const KernelImage& kernel, uint64_t image_gpa,
                                 uint64_t image_size) {
  // write_boot_tables() reads the fault-handler table and writes the low
  // tables through raw pointers: check here that all of it is RAM.
  EMBER_TRY(auto low, memory.slice(0, abi::kIstDoubleTop));
  EMBER_TRY(auto table, memory.const_slice(kernel.note.fault_handlers, 32 * sizeof(uint64_t)));
  (void)table;
  const uint64_t mmio[] = {abi::kMmioBase};
  abi::BootTablesSpec spec{};
  spec.mem_size = memory.ram_size();
  spec.image_gpa = image_gpa;
  spec.image_size = image_size;
  spec.mmio_gpas = mmio;
  spec.mmio_count = 1;
  spec.note = kernel.note;
  if (!abi::write_boot_tables(reinterpret_cast<uintptr_t>(low.data()), spec))
    return Error{"cannot build the guest page tables (memory size or image placement)"};
  return Ok();
}

kvm_sregs make_long_mode_sregs(const kvm_sregs& base) {
  kvm_sregs s = base;
  s.cs = user_segment(abi::kSelUserCode, true);
  s.ss = user_segment(abi::kSelUserData, false);
  s.ds = s.es = s.fs = s.gs = s.ss;
  s.tr = kvm_segment{};
  s.tr.base = abi::kTssGpa;
  s.tr.limit = 0x67;
  s.tr.selector = abi::kSelTss;
  s.tr.type = 11;  // 64-bit TSS, busy
  s.tr.present = 1;
  s.ldt = kvm_segment{};
  s.ldt.type = 2;
  s.ldt.present = 1;
  s.ldt.limit = 0xffff;
  s.ldt.unusable = 1;
  s.gdt.base = abi::kGdtGpa;
  s.gdt.limit = 8 * 8 - 1;  // null, 5 code/data descriptors, the 16-byte TSS descriptor
  s.idt.base = abi::kIdtGpa;
  s.idt.limit = 256 * 16 - 1;
  s.cr0 = abi::kCr0;
  s.cr3 = abi::kPml4Gpa;
  s.cr4 = abi::kCr4;
  s.efer = abi::kEfer;
  return s;
}

kvm_lapic_state make_lapic(const kvm_lapic_state& base) {
  kvm_lapic_state s = base;
  set_apic_reg(s, kApicSvr, 0x1ff);  // software-enable, spurious vector 0xff
  set_apic_reg(s, kApicTpr, 0);
  for (uint32_t lvt : {kApicLvtTimer, kApicLvtLint0, kApicLvtLint1, kApicLvtError})
    set_apic_reg(s, lvt, apic_reg(s, lvt) | kApicLvtMasked);
  return s;
}

Result<void> setup_boot_vcpu(Vcpu& vcpu, const Kvm& kvm, const abi::GuestNote& note) {
  if (!kvm.supported_cpuid()) return Error{"setup_boot_vcpu: supported CPUID not loaded"};
  EMBER_TRY_VOID(vcpu.set_cpuid(kvm.supported_cpuid()));
  const std::pair<uint32_t, uint64_t> msrs[] = {
      {abi::kMsrStar, abi::kStar},     {abi::kMsrLstar, note.syscall_entry}, {abi::kMsrSfmask, abi::kSfmask},
      {abi::kMsrPat, kPatDefault},     {abi::kMsrFsBase, 0},                 {abi::kMsrGsBase, 0},
      {abi::kMsrKernelGsBase, 0},
  };
  EMBER_TRY_VOID(vcpu.set_msrs(msrs));
  EMBER_TRY(auto lapic, vcpu.get_lapic());
  EMBER_TRY_VOID(vcpu.set_lapic(make_lapic(lapic)));
  EMBER_TRY(auto sregs, vcpu.get_sregs());
  EMBER_TRY_VOID(vcpu.set_sregs(make_long_mode_sregs(sregs)));
  kvm_regs regs{};
  regs.rip = note.runtime_entry;
  regs.rdi = abi::kBootInfoGpa;
  regs.rflags = abi::kUserRflags;
  EMBER_TRY_VOID(vcpu.set_regs(regs));
  return Ok();
}

}  // namespace ember

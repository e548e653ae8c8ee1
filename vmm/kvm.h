// Kvm, KvmVm, Vcpu: thin move-only owners of the KVM file descriptors. Each
// method is one ioctl with its errno turned into a one-line Error; policy
// (which values to load) lives in boot.cc and machine.cc.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace ember {

class KvmVm;
class Vcpu;

class Kvm {
 public:
  // Opens /dev/kvm (or `path`), checks the API version, reads the kvm_run size.
  static Result<Kvm> open(const char* path = "/dev/kvm");
  // KVM_GET_SUPPORTED_CPUID, cached. Slow (~270 us here: the host kernel
  // executes CPUID for every leaf, each an exit to the outer hypervisor), so
  // the VMM runs it on the vCPU thread while the main thread builds the VM.
  // Not thread-safe against supported_cpuid*().
  Result<void> load_supported_cpuid();

  int fd() const { return fd_.get(); }
  // After load_supported_cpuid(): the table laid out as the kernel wants it
  // for KVM_SET_CPUID2 (see kvm_abi.h: not a C++ kvm_cpuid2); else nullptr.
  const void* supported_cpuid() const { return cpuid_.empty() ? nullptr : cpuid_.data(); }
  std::span<const kvm_cpuid_entry2> supported_cpuid_entries() const;
  int check_extension(long cap) const;
  // KVM_GET_MSR_INDEX_LIST: every MSR KVM saves/restores or emulates.
  Result<std::vector<uint32_t>> msr_index_list() const;

  Result<KvmVm> create_vm() const;

 private:
  Fd fd_;
  std::vector<uint64_t> cpuid_;  // kvm_cpuid2 + entries, 8-byte aligned storage
  size_t vcpu_mmap_size_ = 0;
};

class KvmVm {
 public:
  KvmVm() = default;
  KvmVm(Fd fd, size_t vcpu_mmap_size) : fd_(std::move(fd)), vcpu_mmap_size_(vcpu_mmap_size) {}

  int fd() const { return fd_.get(); }

  // Memslots must be set before create_irqchip(): the other order costs
  // ~7 ms per slot on this platform (PLATFORM.md).
  Result<void> set_memory_region(uint32_t slot, uint64_t gpa, void* host, uint64_t size, bool readonly);
  Result<void> create_irqchip();

  struct MsiRoute {
    uint32_t gsi;
    uint64_t address;
    uint32_t data;
  };
  // Replaces the whole GSI routing table with these MSI routes.
  Result<void> set_msi_routes(std::span<const MsiRoute> routes);
  Result<void> add_irqfd(int event_fd, uint32_t gsi);
  // An MMIO ioeventfd; with `datamatch`, only writes of that value signal it.
  Result<void> add_ioeventfd(int event_fd, uint64_t gpa, uint32_t len, std::optional<uint64_t> datamatch);

  Result<Vcpu> create_vcpu(uint32_t id);

  int check_extension(long cap) const;
  // chip: KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE, _IOAPIC.
  Result<kvm_irqchip> get_irqchip(uint32_t chip) const;
  Result<void> set_irqchip(const kvm_irqchip& chip);
  Result<kvm_clock_data> get_clock() const;
  Result<void> set_clock(const kvm_clock_data& clock);

 private:
  Fd fd_;
  size_t vcpu_mmap_size_ = 0;
};

class Vcpu {
 public:
  Vcpu() = default;
  Vcpu(Fd fd, Mapping run) : fd_(std::move(fd)), run_(std::move(run)) {}

  int fd() const { return fd_.get(); }
  kvm_run* run() const { return static_cast<kvm_run*>(run_.get()); }

  Result<kvm_regs> get_regs() const;
  Result<void> set_regs(const kvm_regs& regs);
  Result<kvm_sregs> get_sregs() const;
  Result<void> set_sregs(const kvm_sregs& sregs);
  // `cpuid`: a kvm_cpuid2 in C layout (Kvm::supported_cpuid()).
  Result<void> set_cpuid(const void* cpuid);
  Result<void> set_cpuid_entries(std::span<const kvm_cpuid_entry2> entries);
  // Sets each (index, value) pair; fails unless KVM accepted all of them.
  Result<void> set_msrs(std::span<const std::pair<uint32_t, uint64_t>> msrs);
  // As many as KVM accepts, in order: the count (stops at the first refusal).
  Result<size_t> set_msrs_partial(std::span<const std::pair<uint32_t, uint64_t>> msrs);
  Result<uint64_t> get_msr(uint32_t index) const;
  // Reads the values of msrs[i].first into msrs[i].second; returns how many
  // KVM read (it stops at the first it cannot).
  Result<size_t> get_msrs(std::span<std::pair<uint32_t, uint64_t>> msrs) const;
  Result<kvm_lapic_state> get_lapic() const;
  Result<void> set_lapic(const kvm_lapic_state& lapic);
  Result<kvm_vcpu_events> get_events() const;
  Result<void> set_events(const kvm_vcpu_events& events);
  Result<kvm_fpu> get_fpu() const;
  Result<void> set_fpu(const kvm_fpu& fpu);
  // KVM_GET_XSAVE2 with `size` bytes (KVM_CAP_XSAVE2, >= 4096), or
  // KVM_GET_XSAVE when size == 4096 and XSAVE2 is missing.
  Result<std::vector<uint8_t>> get_xsave(size_t size) const;
  Result<void> set_xsave(std::span<const uint8_t> xsave);
  Result<kvm_xcrs> get_xcrs() const;
  Result<void> set_xcrs(const kvm_xcrs& xcrs);
  Result<kvm_debugregs> get_debugregs() const;
  Result<void> set_debugregs(const kvm_debugregs& regs);
  Result<kvm_mp_state> get_mp_state() const;
  Result<void> set_mp_state(const kvm_mp_state& state);
  Result<uint32_t> tsc_khz() const;

 private:
  Fd fd_;
  Mapping run_;
};

}  // namespace ember

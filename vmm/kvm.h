// Kvm, Vm, Vcpu: thin move-only owners of the KVM file descriptors. Each
// method is one ioctl with its errno turned into a one-line Error; policy
// (which values to load) lives in boot.cc and machine.cc.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "vmm/fd.h"
#include "vmm/result.h"

namespace ember {

class Vm;
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
  size_t vcpu_mmap_size() const { return vcpu_mmap_size_; }
  int check_extension(long cap) const;

  Result<Vm> create_vm() const;

 private:
  Fd fd_;
  std::vector<uint64_t> cpuid_;  // kvm_cpuid2 + entries, 8-byte aligned storage
  size_t vcpu_mmap_size_ = 0;
};

class Vm {
 public:
  Vm() = default;
  Vm(Fd fd, size_t vcpu_mmap_size) : fd_(std::move(fd)), vcpu_mmap_size_(vcpu_mmap_size) {}

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
  // Sets each (index, value) pair; fails unless KVM accepted all of them.
  Result<void> set_msrs(std::span<const std::pair<uint32_t, uint64_t>> msrs);
  Result<uint64_t> get_msr(uint32_t index) const;
  Result<kvm_lapic_state> get_lapic() const;
  Result<void> set_lapic(const kvm_lapic_state& lapic);
  Result<kvm_vcpu_events> get_events() const;
  Result<uint32_t> tsc_khz() const;

 private:
  Fd fd_;
  Mapping run_;
};

}  // namespace ember

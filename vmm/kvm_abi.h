// C++-safe stand-ins for the KVM structs that end in a flexible array.
//
// linux-libc-dev 6.x declares those arrays with __DECLARE_FLEX_ARRAY, which in
// C++ wraps an empty struct (size 1, not 0): sizeof(kvm_cpuid2) becomes 12
// instead of 8, `entries` moves, and every ioctl number built with
// _IOWR(..., struct kvm_cpuid2) is one the kernel does not know (EINVAL).
// So the VMM lays these out itself (header, then the entries at offset 8, as
// in C) and uses ioctl numbers computed from the C sizes.
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstdint>

namespace ember::kvm_abi {

struct CountHeader {  // kvm_cpuid2 / kvm_msrs / kvm_irq_routing: {u32 n; u32 pad/flags;} + entries[]
  uint32_t count;
  uint32_t pad;
};
static_assert(sizeof(CountHeader) == 8);
static_assert(sizeof(kvm_cpuid_entry2) == 40);
static_assert(sizeof(kvm_msr_entry) == 16);
static_assert(sizeof(kvm_irq_routing_entry) == 48);

inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CountHeader);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CountHeader);
inline constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, CountHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, CountHeader);
inline constexpr unsigned long kSetGsiRouting = _IOW(KVMIO, 0x6a, CountHeader);

// The values every C program sees (sizes from the C layout).
static_assert(kGetSupportedCpuid == 0xc008ae05ul);
static_assert(kSetCpuid2 == 0x4008ae90ul);
static_assert(kGetMsrs == 0xc008ae88ul);
static_assert(kSetMsrs == 0x4008ae89ul);
static_assert(kSetGsiRouting == 0x4008ae6aul);

}  // namespace ember::kvm_abi

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

#include <cstddef>
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

// struct kvm_msr_list {__u32 nmsrs; __u32 indices[];}: 4 bytes in C, 8 in C++.
struct MsrListHeader {
  uint32_t count;
};
inline constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, MsrListHeader);

// struct kvm_xsave {__u32 region[1024]; __u32 extra[];}: 4096 bytes in C,
// 4100 in C++. KVM_GET_XSAVE2 writes KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2)
// bytes (at least 4096); KVM_SET_XSAVE reads as many.
inline constexpr size_t kXsaveLegacySize = 4096;
struct XsaveRegion {
  uint32_t region[1024];
};
static_assert(sizeof(XsaveRegion) == kXsaveLegacySize);
inline constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, XsaveRegion);
inline constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, XsaveRegion);
inline constexpr unsigned long kGetXsave2 = _IOR(KVMIO, 0xcf, XsaveRegion);

// The values every C program sees (sizes from the C layout).
static_assert(kGetSupportedCpuid == 0xc008ae05ul);
static_assert(kSetCpuid2 == 0x4008ae90ul);
static_assert(kGetMsrs == 0xc008ae88ul);
static_assert(kSetMsrs == 0x4008ae89ul);
static_assert(kSetGsiRouting == 0x4008ae6aul);
static_assert(kGetMsrIndexList == 0xc004ae02ul);
static_assert(kGetXsave == 0x9000aea4ul);
static_assert(kSetXsave == 0x5000aea5ul);
static_assert(kGetXsave2 == 0x9000aecful);

// The fixed-size structs a snapshot stores verbatim: their C sizes.
static_assert(sizeof(kvm_regs) == 144);
static_assert(sizeof(kvm_sregs) == 312);
static_assert(sizeof(kvm_fpu) == 416);
static_assert(sizeof(kvm_lapic_state) == 1024);
static_assert(sizeof(kvm_vcpu_events) == 64);
static_assert(sizeof(kvm_debugregs) == 128);
static_assert(sizeof(kvm_mp_state) == 4);
static_assert(sizeof(kvm_irqchip) == 520);
static_assert(sizeof(kvm_clock_data) == 48);
static_assert(sizeof(kvm_xcrs) == 392);

}  // namespace ember::kvm_abi

// Saving and loading the state KVM keeps for a vCPU and for the VM (irqchip,
// clock): the non-memory half of a snapshot (vmm/vmstate.h). Called on the
// vCPU thread, which owns the vCPU fd (its seccomp allow-list has these
// ioctls; the event loop's has none).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "vmm/kvm.h"
#include "vmm/vmstate.h"

namespace ember {

// The MSRs of KVM_GET_MSR_INDEX_LIST that this vCPU lets us read AND write
// back (some are read-only or refuse their own value); in KVM_SET_MSRS order
// (IA32_TSC first). Call once, before the guest runs: it writes each value
// back to test it.
Result<std::vector<uint32_t>> snapshot_msr_list(const Kvm& kvm, Vcpu& vcpu);

// Everything but the CPUID table (the caller knows what it set). The vCPU
// must be out of KVM_RUN with no MMIO or PIO exit pending completion (see
// complete_pending_io()).
Result<void> save_vcpu_state(const Vcpu& vcpu, std::span<const uint32_t> msrs, size_t xsave_size, VcpuSnapshot* out);
Result<void> save_vm_state(const KvmVm& vm, VmSnapshot* out);

// The reverse. set_cpuid: a fresh vCPU (restore); false for a vCPU that has
// run already (reset in place: KVM refuses to change CPUID then).
Result<void> load_vcpu_state(Vcpu& vcpu, const VcpuSnapshot& s, bool set_cpuid);
Result<void> load_vm_state(KvmVm& vm, const VmSnapshot& s);

// An MMIO or PIO exit is finished by the next KVM_RUN (the store or load is
// emulated then). KVM_RUN with immediate_exit set does exactly that and
// returns EINTR without entering the guest (Firecracker's pause). Needed
// before saving state, and before loading state into a vCPU whose last exit
// was MMIO (the pending completion would overwrite the loaded RIP).
Result<void> complete_pending_io(Vcpu& vcpu);

}  // namespace ember

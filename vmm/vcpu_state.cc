#include "vmm/vcpu_state.h"

#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <optional>

namespace ember {

Result<std::vector<uint32_t>> snapshot_msr_list(const Kvm& kvm, Vcpu& vcpu) {
  EMBER_TRY(auto all, kvm.msr_index_list());
  std::vector<std::pair<uint32_t, uint64_t>> usable;
  for (uint32_t index : all) {
    std::pair<uint32_t, uint64_t> m{index, 0};
    auto got = vcpu.get_msrs(std::span(&m, 1));
    if (!got || *got != 1) continue;
    auto set = vcpu.set_msrs_partial(std::span(&m, 1));
    if (!set || *set != 1) continue;
    usable.push_back(m);
  }
  // IA32_TSC first: the TSC deadline and anything else relative to the TSC
  // must come after it.
  std::stable_sort(usable.begin(), usable.end(), [](const auto& a, const auto& b) {
    return (a.first == kMsrTsc) > (b.first == kMsrTsc);
  });
  std::vector<uint32_t> out;
  for (auto& m : usable) out.push_back(m.first);
  return out;
}

Result<void> save_vcpu_state(const Vcpu& vcpu, std::span<const uint32_t> msrs, size_t xsave_size, VcpuSnapshot* s) {
  EMBER_TRY(s->regs, vcpu.get_regs());
  EMBER_TRY(s->sregs, vcpu.get_sregs());
  EMBER_TRY(s->fpu, vcpu.get_fpu());
  if (xsave_size) {
    // KVM_GET_XSAVE2 captures what the vCPU's registers hold, AVX-512
    // included, even where the guest's CPUID says XSAVE is absent (PVM: the
    // program runs natively in ring 3 and uses the host's vector units).
    EMBER_TRY(s->xsave, vcpu.get_xsave(xsave_size));
    auto xcrs = vcpu.get_xcrs();
    s->has_xcrs = xcrs.ok();
    if (xcrs) s->xcrs = *xcrs;
  }
  s->msrs.clear();
  for (uint32_t i : msrs) s->msrs.emplace_back(i, 0);
  EMBER_TRY(size_t n, vcpu.get_msrs(std::span(s->msrs)));
  if (n != s->msrs.size())
    return Error{"KVM_GET_MSRS: MSR " + std::to_string(s->msrs[n].first) + " could not be read"};
  EMBER_TRY(s->lapic, vcpu.get_lapic());
  EMBER_TRY(s->events, vcpu.get_events());
  EMBER_TRY(s->debugregs, vcpu.get_debugregs());
  EMBER_TRY(s->mp_state, vcpu.get_mp_state());
  return Ok();
}

Result<void> save_vm_state(const KvmVm& vm, VmSnapshot* s) {
  for (uint32_t chip = 0; chip < 3; chip++) {
    EMBER_TRY(s->irqchip[chip], vm.get_irqchip(chip));
  }
  EMBER_TRY(s->clock, vm.get_clock());
  return Ok();
}

Result<void> load_vcpu_state(Vcpu& vcpu, const VcpuSnapshot& s, bool set_cpuid) {
  if (set_cpuid) EMBER_TRY_VOID(vcpu.set_cpuid_entries(s.cpuid));
  EMBER_TRY_VOID(vcpu.set_sregs(s.sregs));
  // Every MSR but the TSC deadline, which KVM ignores until the LAPIC's
  // timer is in TSC-deadline mode: it follows the LAPIC.
  std::vector<std::pair<uint32_t, uint64_t>> msrs;
  msrs.reserve(s.msrs.size());
  std::optional<uint64_t> deadline;
  for (const auto& m : s.msrs) {
    if (m.first == kMsrTscDeadline) deadline = m.second;
    else msrs.push_back(m);
  }
  EMBER_TRY_VOID(vcpu.set_msrs(msrs));
  EMBER_TRY_VOID(vcpu.set_regs(s.regs));
  if (!s.xsave.empty()) EMBER_TRY_VOID(vcpu.set_xsave(s.xsave));  // includes the legacy FPU/SSE state
  else EMBER_TRY_VOID(vcpu.set_fpu(s.fpu));
  if (s.has_xcrs) EMBER_TRY_VOID(vcpu.set_xcrs(s.xcrs));
  EMBER_TRY_VOID(vcpu.set_lapic(s.lapic));
  if (deadline) {
    const std::pair<uint32_t, uint64_t> d{kMsrTscDeadline, *deadline};
    EMBER_TRY_VOID(vcpu.set_msrs(std::span(&d, 1)));
  }
  EMBER_TRY_VOID(vcpu.set_events(s.events));
  EMBER_TRY_VOID(vcpu.set_debugregs(s.debugregs));
  EMBER_TRY_VOID(vcpu.set_mp_state(s.mp_state));
  return Ok();
}

Result<void> load_vm_state(KvmVm& vm, const VmSnapshot& s) {
  for (const kvm_irqchip& chip : s.irqchip) EMBER_TRY_VOID(vm.set_irqchip(chip));
  kvm_clock_data clock = s.clock;
  clock.flags = 0;  // just the value: the VM's clock goes on from where it was saved
  EMBER_TRY_VOID(vm.set_clock(clock));
  return Ok();
}

Result<void> complete_pending_io(Vcpu& vcpu) {
  kvm_run* run = vcpu.run();
  run->immediate_exit = 1;
  const int r = ::ioctl(vcpu.fd(), KVM_RUN, 0);
  const int err = errno;
  run->immediate_exit = 0;
  if (r == 0 || err == EINTR || err == EAGAIN) return Ok();
  return errno_error("KVM_RUN (completing a pending exit)", err);
}

}  // namespace ember

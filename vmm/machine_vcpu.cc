// Machine, the vCPU thread: its set-up (boot or restore), the run loop,
// parking (pause), the idle wait between runs and the commands it serves.
#include "vmm/machine_impl.h"

namespace ember {

void Machine::set_phase(Phase p) {
  phase_.store(p, std::memory_order_release);
  phase_.notify_all();
}

bool Machine::wait_phase(Phase p) {
  for (;;) {
    const int now = phase_.load(std::memory_order_acquire);
    if (now == kPhaseAbort) return false;
    if (now >= p) return true;
    phase_.wait(now, std::memory_order_acquire);
  }
}

Result<void> Machine::vcpu_setup() { return restoring_ ? vcpu_setup_restore() : vcpu_setup_boot(); }

Result<void> Machine::vcpu_setup_boot() {
  EMBER_TRY_VOID(kvm_.load_supported_cpuid());
  cpuid_ns_ = monotonic_ns();
  if (!wait_phase(kPhaseVmReady)) return Error{"aborted"};
  EMBER_TRY(vcpu_, vm_.create_vcpu(0));
  run_ptr_.store(vcpu_.run(), std::memory_order_seq_cst);
  EMBER_TRY_VOID(setup_boot_vcpu(vcpu_, kvm_, kernel_.note));
  if (!config_.snapshot_dir.empty() || config_.allow_snapshots) {
    // What a snapshot will save, decided before the guest runs (and before
    // the seccomp filter): the CPUID table as set, the MSRs that can be
    // read and written back. Probing the MSRs takes a few hundred µs here:
    // done while the event loop still builds the devices, not after.
    const auto entries = kvm_.supported_cpuid_entries();
    cpuid_set_.assign(entries.begin(), entries.end());
    EMBER_TRY(snapshot_msrs_, snapshot_msr_list(kvm_, vcpu_));
  }
  vcpu_ready_ns_ = monotonic_ns();
  if (!wait_phase(kPhaseGo)) return Error{"aborted"};
  // The clock sample: guest TSC and host realtime, read back to back.
  auto khz = vcpu_.tsc_khz();
  boot_info_.tsc_khz = khz ? *khz : 0;
  EMBER_TRY(boot_info_.boot_tsc, vcpu_.get_msr(kMsrTsc));  // IA32_TSC, as the guest reads it
  boot_info_.realtime_ns = realtime_ns();
  EMBER_TRY_VOID(memory_.write_obj(abi::kBootInfoGpa, boot_info_));
  return Ok();
}

Result<void> Machine::vcpu_setup_restore() {
  // KVM_CREATE_VM (~150-450 us here) while the event loop's thread reads and
  // checks the snapshot files.
  {
    auto vm = kvm_.create_vm();
    if (!vm) vm_error_ = vm.message();
    else created_vm_ = std::move(*vm);
    vm_created_.store(vm ? 1 : -1);
    vm_created_.notify_all();
    if (!vm) return Error{"aborted"};
  }
  if (!wait_phase(kPhaseVmReady)) return Error{"aborted"};
  EMBER_TRY(vcpu_, vm_.create_vcpu(0));
  run_ptr_.store(vcpu_.run(), std::memory_order_seq_cst);
  auto r = load_vcpu_state(vcpu_, snap_.vcpu, /*set_cpuid=*/true);
  if (r) r = load_vm_state(vm_, snap_);
  if (!r) return Error{"snapshot " + config_.restore_dir + ": KVM refused its state: " + r.message()};
  vcpu_ready_ns_ = monotonic_ns();
  if (!wait_phase(kPhaseGo)) return Error{"aborted"};
  EMBER_TRY_VOID(write_restore_boot_info());
  kick_device_irqs();
  return Ok();
}

// Device interrupts raised while the devices were restored may have landed
// in the LAPIC before its saved state replaced it: raise them all again once
// the state is in (a spurious one costs the guest one "EOI, iretq").
void Machine::kick_device_irqs() {
  for (const Fd& fd : irqfds_) signal_eventfd(fd.get());
}

void Machine::vcpu_main() {
  auto r = vcpu_setup();
  if (r && config_.seccomp) {  // right before the first KVM_RUN
    r = seccomp::install(seccomp::Thread::kVcpu);
    if (r && config_.after_seccomp) config_.after_seccomp("vcpu");
  }
  if (!r) {
    if (!stop_.load() && phase_.load() != kPhaseAbort) {
      vcpu_result_ = ExitDecision{ExitDecision::kFatal, r.message()};
      vcpu_message_ = r.message();
    }
  } else {
    for (;;) {
      vcpu_loop();
      // A restored VM waits for a reset; a VM paused at the ready point
      // waits for the snapshot to be saved.
      if (stop_.load() || !(restoring_ || paused_at_ready_)) break;
      vcpu_end_ns_ = monotonic_ns();
      vcpu_state_.store(kVcpuIdle);
      vcpu_state_.notify_all();
      signal_eventfd(vcpu_done_.get());
      if (!vcpu_idle()) break;
    }
  }
  vcpu_end_ns_ = monotonic_ns();
  vcpu_state_.store(kVcpuEnded);
  vcpu_state_.notify_all();
  signal_eventfd(vcpu_done_.get());
}

bool Machine::vcpu_idle() {
  for (;;) {
    const uint32_t seen = wake_.load();
    if (stop_.load()) return false;
    const uint32_t c = cmd_.load();
    if (c == kCmdSave) {
      vcpu_save();
      continue;
    }
    if (c == kCmdReload) {
      // Reset in place: the vCPU's own state is loaded here while the event
      // loop drops the private pages and restores the devices; the boot
      // info (in guest memory) is written once that is done.
      Result<void> r = complete_pending_io(vcpu_);
      if (r) r = load_vcpu_state(vcpu_, snap_.vcpu, /*set_cpuid=*/false);
      if (r) r = load_vm_state(vm_, snap_);
      for (uint32_t m; (m = main_ready_.load()) == 0;) futex_wait(main_ready_, m);
      if (r && main_ready_.load() != 1) r = Error{"the event loop could not reset the devices"};
      if (r) r = write_restore_boot_info();
      if (r) kick_device_irqs();
      cmd_result_ = r;
      vcpu_result_ = ExitDecision{};
      vcpu_message_.clear();
      cmd_.store(kCmdNone);
      futex_wake(cmd_);
      if (!r) {
        vcpu_result_ = ExitDecision{ExitDecision::kFatal, "reset: " + r.message()};
        vcpu_message_ = vcpu_result_.error;
        signal_eventfd(vcpu_done_.get());
        continue;
      }
      vcpu_state_.store(kVcpuRunning);
      return true;
    }
    futex_wait(wake_, seen);
  }
}

void Machine::vcpu_save() {
  // The event loop has drained the devices (whose interrupts may have
  // changed the LAPIC): now the vCPU and VM state.
  Result<void> r = complete_pending_io(vcpu_);
  if (r) r = save_vcpu_state(vcpu_, snapshot_msrs_, xsave_size_, &snap_.vcpu);
  if (r) r = save_vm_state(vm_, &snap_);
  snap_.vcpu.cpuid = cpuid_set_;
  cmd_result_ = r;
  cmd_.store(kCmdNone);
  futex_wake(cmd_);
}

void Machine::wake_vcpu() {
  wake_.fetch_add(1);
  futex_wake(wake_);
}

Result<void> Machine::vcpu_command(Command c, bool wait) {
  const int st = vcpu_state_.load();
  if (st != kVcpuIdle && !(st == kVcpuParked && c == kCmdSave)) return Error{"the vCPU is not stopped"};
  cmd_.store(static_cast<uint32_t>(c));
  wake_vcpu();
  if (!wait) return Ok();
  for (uint32_t now; (now = cmd_.load()) != kCmdNone;) futex_wait(cmd_, now);
  return cmd_result_;
}

void Machine::vcpu_park() {
  vcpu_state_.store(kVcpuParked);
  vcpu_state_.notify_all();
  // Parked, the vCPU thread also saves its state on request (API snapshots
  // of a paused VM). resume() and stop_vcpu() bump wake_.
  for (;;) {
    const uint32_t seen = wake_.load();
    if (!pause_.load() || stop_.load()) break;
    if (cmd_.load() == kCmdSave) {
      vcpu_save();
      continue;
    }
    futex_wait(wake_, seen);
  }
  vcpu_state_.store(kVcpuRunning);
}

void Machine::pause() {
  const bool already = pause_.exchange(true);  // start_paused: set before the vCPU ever ran
  if (vcpu_state_.load() == kVcpuEnded || !vcpu_thread_.joinable()) return;
  if (!already) {
    if (kvm_run* run = run_ptr_.load(std::memory_order_seq_cst)) run->immediate_exit = 1;
    ::pthread_kill(vcpu_thread_.native_handle(), kKickSignal);
  }
  for (int s; (s = vcpu_state_.load()) == kVcpuRunning;) vcpu_state_.wait(s);
}

void Machine::resume() {
  pause_.store(false);
  wake_vcpu();
}

void Machine::vcpu_loop() {
  sigset_t kick;
  sigemptyset(&kick);
  sigaddset(&kick, kKickSignal);
  ::pthread_sigmask(SIG_UNBLOCK, &kick, nullptr);

  kvm_run* run = vcpu_.run();
  run->immediate_exit = 0;
  const uint64_t now = monotonic_ns();
  if (!first_run_ns_) first_run_ns_ = now;
  resumed_ns_.store(now);
  resumed_seq_.fetch_add(1);
  futex_wake(resumed_seq_);
  for (;;) {
    if (stop_.load(std::memory_order_seq_cst)) {
      vcpu_result_ = ExitDecision{ExitDecision::kContinue, {}};  // stopped from outside
      break;
    }
    if (pause_.load()) {
      vcpu_park();
      continue;
    }
    if (::ioctl(vcpu_.fd(), KVM_RUN, 0) < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        counts_.eintr++;
        run->immediate_exit = 0;
        continue;
      }
      vcpu_result_ = ExitDecision{ExitDecision::kFatal, errno_error("KVM_RUN").message};
      vcpu_message_ = vcpu_result_.error;
      break;
    }
    ExitDecision d = handle_exit(*run, bus_, *control_, counts_, &log_);
    if (d.kind == ExitDecision::kContinue) {
      if (writer_ && !paused_at_ready_ && control_->ready()) {
        // The ready point: finish the control-page write (so that RIP is
        // past it), then stop here for the snapshot.
        auto r = complete_pending_io(vcpu_);
        if (!r) {
          vcpu_result_ = ExitDecision{ExitDecision::kFatal, r.message()};
          vcpu_message_ = r.message();
          break;
        }
        paused_at_ready_ = true;
        vcpu_result_ = ExitDecision{};
        break;
      }
      continue;
    }
    vcpu_result_ = d;
    if (d.kind == ExitDecision::kFatal) {
      auto regs = vcpu_.get_regs();
      std::optional<uint32_t> exc;
      if (auto ev = vcpu_.get_events(); ev && ev->exception.injected) exc = ev->exception.nr;
      vcpu_message_ = describe_fatal_exit(*run, d.error, regs ? regs->rip : 0, exc);
    } else if (auto o = control_->outcome(); o && o->kind == ControlOutcome::kFault) {
      auto regs = vcpu_.get_regs();
      auto sregs = vcpu_.get_sregs();
      std::array<uint64_t, 7> frame{};
      size_t words = 0;
      if (regs)
        for (; words < frame.size(); words++) {
          auto w = memory_.read_obj<uint64_t>(regs->rsp + 8 * words);
          if (!w) break;
          frame[words] = *w;
        }
      vcpu_message_ = describe_fault(o->value, sregs ? sregs->cr2 : 0, std::span<const uint64_t>(frame.data(), words));
    }
    break;
  }
}

void Machine::stop_vcpu() {
  if (!vcpu_thread_.joinable()) return;
  stop_.store(true, std::memory_order_seq_cst);
  pause_.notify_all();  // a parked vCPU sees stop_
  wake_vcpu();          // so does an idle one
  if (phase_.load() < kPhaseGo) set_phase(kPhaseAbort);
  // immediate_exit covers a kick that lands before KVM_RUN is entered; the
  // signal covers a vCPU already inside (halted, or running guest code).
  if (kvm_run* run = run_ptr_.load(std::memory_order_seq_cst)) run->immediate_exit = 1;
  ::pthread_kill(vcpu_thread_.native_handle(), kKickSignal);
  vcpu_thread_.join();
}

}  // namespace ember

#include "vmm/vcpu_exit.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "api/control.h"

namespace ember {

namespace {
std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}
}  // namespace

const char* exit_reason_name(uint32_t r) {
  static const char* const kNames[] = {
      "UNKNOWN",      "EXCEPTION", "IO",          "HYPERCALL",  "DEBUG",          "HLT",        "MMIO",
      "IRQ_WINDOW",   "SHUTDOWN",  "FAIL_ENTRY",  "INTR",       "SET_TPR",        "TPR_ACCESS", "S390_SIEIC",
      "S390_RESET",   "DCR",       "NMI",         "INTERNAL_ERROR", "OSI",        "PAPR_HCALL", "S390_UCONTROL",
      "WATCHDOG",     "S390_TSCH", "EPR",         "SYSTEM_EVENT", "S390_STSI",    "IOAPIC_EOI", "HYPERV",
      "ARM_NISV",     "X86_RDMSR", "X86_WRMSR",   "DIRTY_RING_FULL", "AP_RESET_HOLD", "X86_BUS_LOCK", "XEN",
      "RISCV_SBI",    "RISCV_CSR", "NOTIFY",
  };
  return r < std::size(kNames) ? kNames[r] : "?";
}

const char* vector_name(uint32_t v) {
  static const char* const kNames[] = {"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#MF(9)",
                                       "#TS", "#NP", "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM",
                                       "#VE", "#CP"};
  return v < std::size(kNames) ? kNames[v] : "exception";
}

const char* signal_name(uint32_t s) {
  static const char* const kNames[] = {"signal 0", "SIGHUP",  "SIGINT",  "SIGQUIT", "SIGILL",    "SIGTRAP", "SIGABRT",
                                       "SIGBUS",   "SIGFPE",  "SIGKILL", "SIGUSR1", "SIGSEGV",   "SIGUSR2", "SIGPIPE",
                                       "SIGALRM",  "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP",
                                       "SIGTTIN",  "SIGTTOU", "SIGURG",  "SIGXCPU", "SIGXFSZ",   "SIGVTALRM", "SIGPROF",
                                       "SIGWINCH", "SIGIO",   "SIGPWR",  "SIGSYS"};
  return s < std::size(kNames) ? kNames[s] : "a real-time signal";
}

bool vector_has_error_code(uint32_t v) {
  return v == 8 || v == 10 || v == 11 || v == 12 || v == 13 || v == 14 || v == 17 || v == 21 || v == 29 || v == 30;
}

std::string ExitCounts::summary() const {
  std::string s;
  for (size_t r = 0; r < by_reason.size(); r++) {
    if (!by_reason[r]) continue;
    if (!s.empty()) s += ' ';
    s += exit_reason_name(static_cast<uint32_t>(r));
    s += '=';
    s += std::to_string(by_reason[r]);
  }
  if (eintr) s += (s.empty() ? "" : " ") + std::string("EINTR=") + std::to_string(eintr);
  return s.empty() ? "none" : s;
}

ExitDecision handle_exit(kvm_run& run, Bus& bus, const ControlDevice& control, ExitCounts& counts,
                         const Log* log) {
  const uint32_t reason = run.exit_reason;
  if (reason < counts.by_reason.size()) counts.by_reason[reason]++;
  switch (reason) {
    case KVM_EXIT_MMIO: {
      const uint32_t len = run.mmio.len <= sizeof run.mmio.data ? run.mmio.len : sizeof run.mmio.data;
      if (run.mmio.is_write) {
        counts.mmio_writes++;
        if (!bus.write(run.mmio.phys_addr, std::span<const uint8_t>(run.mmio.data, len)) && log)
          log->debug("MMIO write of %u bytes to unmapped 0x%" PRIx64 " ignored", len,
                     static_cast<uint64_t>(run.mmio.phys_addr));
        if (control.outcome()) return ExitDecision{ExitDecision::kGuestDone, {}};
      } else {
        counts.mmio_reads++;
        if (!bus.read(run.mmio.phys_addr, std::span<uint8_t>(run.mmio.data, len)) && log)
          log->debug("MMIO read of %u bytes from unmapped 0x%" PRIx64 " returns 0", len,
                     static_cast<uint64_t>(run.mmio.phys_addr));
      }
      return ExitDecision{};
    }
    case KVM_EXIT_SHUTDOWN:
      return ExitDecision{ExitDecision::kFatal, "guest triple fault"};
    case KVM_EXIT_INTERNAL_ERROR: {
      std::string e = "KVM internal error (suberror " + std::to_string(run.internal.suberror);
      if (run.internal.suberror == KVM_INTERNAL_ERROR_EMULATION) e += ": instruction emulation failed";
      e += ")";
      const uint32_t n = run.internal.ndata < 16 ? run.internal.ndata : 16;
      if (n) {
        e += " data";
        for (uint32_t i = 0; i < n; i++) e += " " + hex(run.internal.data[i]);
      }
      return ExitDecision{ExitDecision::kFatal, e};
    }
    case KVM_EXIT_FAIL_ENTRY:
      return ExitDecision{ExitDecision::kFatal, "VM entry failed (hardware reason " +
                                                    hex(run.fail_entry.hardware_entry_failure_reason) + ")"};
    case KVM_EXIT_HLT:
      return ExitDecision{ExitDecision::kFatal, "guest halted with no way to wake it (HLT exit)"};
    case KVM_EXIT_IO:
      return ExitDecision{ExitDecision::kFatal, std::string("guest port I/O (") +
                                                    (run.io.direction == KVM_EXIT_IO_OUT ? "out" : "in") +
                                                    " port " + hex(run.io.port) + "): Ember has no port devices"};
    case KVM_EXIT_SYSTEM_EVENT:
      return ExitDecision{ExitDecision::kFatal, "guest requested a system event (type " +
                                                    std::to_string(run.system_event.type) + ")"};
    case KVM_EXIT_IRQ_WINDOW_OPEN:
    case KVM_EXIT_INTR:
      return ExitDecision{};
    default:
      return ExitDecision{ExitDecision::kFatal, std::string("unexpected KVM exit ") + exit_reason_name(reason) + " (" +
                                                    std::to_string(reason) + ")"};
  }
}

std::string describe_fatal_exit(const kvm_run& run, const std::string& error, uint64_t rip,
                                std::optional<uint32_t> pending_exception) {
  std::string s = error + " (rip=" + hex(rip);
  if (run.exit_reason == KVM_EXIT_SHUTDOWN) {
    s += ", last exception ";
    s += pending_exception ? vector_name(*pending_exception) : std::string("unknown");
  }
  s += ")";
  return s;
}

std::string describe_fault(uint32_t vector, uint64_t cr2, std::span<const uint64_t> frame) {
  const uint32_t sig = abi::signal_for_vector(vector);
  std::string s = std::string("program killed by ") + signal_name(sig) + ": " + vector_name(vector);
  // frame: [0] saved rax, [1] error code (if any), then rip, cs, rflags, rsp, ss.
  const size_t rip_at = vector_has_error_code(vector) ? 2 : 1;
  if (frame.size() > rip_at) s += " at rip=" + hex(frame[rip_at]);
  if (vector == 14) s += " addr=" + hex(cr2);
  if (vector_has_error_code(vector) && frame.size() > 1) s += " (error " + hex(frame[1]) + ")";
  if (frame.size() > rip_at + 3) s += " rsp=" + hex(frame[rip_at + 3]);
  return s;
}

}  // namespace ember

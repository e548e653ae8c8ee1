// What the vCPU thread does with each KVM_RUN exit, as pure functions of
// (devices, exit) so that they are unit-testable without /dev/kvm: MMIO goes
// to the Bus, a control-page outcome ends the run, anything else the guest
// should never cause ends it with a one-line error.
#pragma once

#include <linux/kvm.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "vmm/bus.h"
#include "vmm/control_device.h"
#include "vmm/log.h"

namespace ember {

struct ExitCounts {
  std::array<uint64_t, 64> by_reason{};  // index: KVM_EXIT_*
  uint64_t mmio_reads = 0;
  uint64_t mmio_writes = 0;
  uint64_t eintr = 0;  // KVM_RUN interrupted by a signal
  // "MMIO=3 IO=1" for the reasons that occurred.
  std::string summary() const;
};

struct ExitDecision {
  enum Kind {
    kContinue,
    kGuestDone,  // the control page reported an outcome (exit, signal, fault)
    kFatal,      // the guest did something that ends the VM with an error
  } kind = kContinue;
  std::string error;  // kFatal: one line, without the register details
};

// Handles one exit (run.exit_reason). For MMIO reads, fills run.mmio.data.
// Accesses to unmapped addresses (reads 0, writes dropped) are counted by
// the bus and, with a verbose `log`, printed.
ExitDecision handle_exit(kvm_run& run, Bus& bus, const ControlDevice& control, ExitCounts& counts,
                         const Log* log = nullptr);

const char* exit_reason_name(uint32_t reason);
const char* vector_name(uint32_t vector);  // "#PF"
const char* signal_name(uint32_t signal);  // "SIGSEGV"
bool vector_has_error_code(uint32_t vector);

// The full one-line message for a kFatal exit, with what the vCPU tells us.
std::string describe_fatal_exit(const kvm_run& run, const std::string& error, uint64_t rip,
                                std::optional<uint32_t> pending_exception);

// "program killed by SIGSEGV: #PF at rip=0x401000 addr=0x0 (error 0x4)".
// `frame` is the guest stack at RSP when the fault handler wrote the control
// page: saved rax, [error code], rip, cs, rflags, rsp, ss. Missing words
// (unreadable stack) are left out of the message.
std::string describe_fault(uint32_t vector, uint64_t cr2, std::span<const uint64_t> frame);

}  // namespace ember

// The seccomp allow-lists of ember-vmm, one per thread kind, as data: each
// entry is one syscall, the argument checks it must pass (all of them), and
// why the VMM needs it. A syscall may appear more than once (the entries
// are alternatives, e.g. one per ioctl request). Anything not listed kills
// the whole process (SECCOMP_RET_KILL_PROCESS).
//
// The tables are compiled to BPF with libseccomp when Ember is built
// (ember-seccomp-gen writes seccomp_bpf.cc); ember-vmm only loads the
// result (seccomp/seccomp.h), so installing a filter costs one syscall, not a
// libseccomp compilation.
//
// They cover what each thread does AFTER set-up: ember-vmm installs them
// once the VM is built and before the first guest instruction
// (vmm/machine.cc). tests/unit/seccomp_filters_test.cc prints the allowed
// syscalls of each thread and compares them with a golden list, so that every
// change shows up in review.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ember::seccomp {

enum class Thread {
  kMain,  // the event loop (and the teardown helper it clones at exit)
  kVcpu,  // a vCPU thread: KVM_RUN and exit handling
};
inline constexpr Thread kAllThreads[] = {Thread::kMain, Thread::kVcpu};
const char* thread_name(Thread t);  // "main", "vcpu"

// One comparison on syscall argument `arg` (0-5): (value_of_arg & mask) == value.
struct ArgCheck {
  unsigned arg = 0;
  uint64_t mask = ~uint64_t{0};
  uint64_t value = 0;
};

struct Rule {
  const char* syscall;            // as libseccomp and strace spell it
  std::vector<ArgCheck> checks;   // all must hold; empty: any arguments
  const char* why;
};

std::span<const Rule> rules(Thread t);

// The distinct syscall names a thread may make, sorted (for review and tests).
std::vector<std::string> allowed_syscalls(Thread t);

}  // namespace ember::seccomp

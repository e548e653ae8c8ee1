// Signals for a single-threaded process: actions, the blocked mask, pending
// signals. A signal sent to itself (kill/tkill/tgkill/raise/abort) is acted
// on at once, or when it is unblocked: default action (terminate: the VMM
// reports 128 + signal; or ignore), SIG_IGN, or the handler, called
// synchronously on the program's stack (or its sigaltstack).
#pragma once

#include <stdint.h>

#include "guest-init/linux_abi.h"
#include "guest-init/syscalls.h"

namespace ember::guest {

class Signals {
 public:
  SysResult action(uint32_t sig, const lx::KernelSigaction* act, lx::KernelSigaction* old);
  SysResult procmask(uint32_t how, const uint64_t* set, uint64_t* old, SyscallFrame* frame);
  SysResult altstack(const lx::StackT* ss, lx::StackT* old, SyscallFrame* frame);
  // Sends `sig` to this process (0 < sig <= 64).
  void send(uint32_t sig, SyscallFrame* frame);

 private:
  void deliver_pending(SyscallFrame* frame);
  void act(uint32_t sig, SyscallFrame* frame);
  static uint64_t bit(uint32_t sig) { return 1ull << (sig - 1); }

  lx::KernelSigaction actions_[lx::NSIG + 1] = {};
  uint64_t blocked_ = 0;
  uint64_t pending_ = 0;
  lx::StackT altstack_ = {};  // size 0: none (SS_DISABLE)
  bool on_altstack_ = false;
};

}  // namespace ember::guest

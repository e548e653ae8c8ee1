// Signals for a single-threaded process: actions, the blocked mask, pending
// signals. A signal sent to itself (kill/tkill/tgkill/raise/abort) is acted
// on at once, or when it is unblocked: default action (terminate: the VMM
// reports 128 + signal; or ignore), SIG_IGN, or the handler, called
// synchronously on the program's stack (or its sigaltstack).
#pragma once

#include <stdint.h>

#include "guest-init/linux_abi.h"
#include "guest-init/syscalls.h"

extern "C" uint32_t ember_signal_depth;  // entry.S: handlers running (see there)

namespace ember::guest {

class Signals {
 public:
  SysResult action(uint32_t sig, const lx::KernelSigaction* act, lx::KernelSigaction* old);
  SysResult procmask(uint32_t how, const uint64_t* set, uint64_t* old, SyscallFrame* frame);
  SysResult altstack(const lx::StackT* ss, lx::StackT* old, SyscallFrame* frame);
  // Sends `sig` to this process (0 < sig <= 64).
  void send(uint32_t sig, SyscallFrame* frame);
  // At every syscall while a handler runs: notices handlers the program
  // left without returning (siglongjmp) from where its stack is now.
  void check_abandoned(uint64_t user_rsp) {
    if (ember_signal_depth) check_abandoned_slow(user_rsp);
  }

 private:
  void deliver_pending(SyscallFrame* frame);
  void check_abandoned_slow(uint64_t user_rsp);
  static constexpr uint32_t kMaxDepth = 16;
  struct Running {  // a handler being run: its stack range and what to restore
    uint64_t stack_lo, stack_hi;
    uint64_t saved_mask;
    bool saved_on_altstack;
  };
  Running running_[kMaxDepth] = {};
  void act(uint32_t sig, SyscallFrame* frame);
  static uint64_t bit(uint32_t sig) { return 1ull << (sig - 1); }

  lx::KernelSigaction actions_[lx::NSIG + 1] = {};
  uint64_t blocked_ = 0;
  uint64_t pending_ = 0;
  lx::StackT altstack_ = {};  // size 0: none (SS_DISABLE)
  bool on_altstack_ = false;
};

}  // namespace ember::guest

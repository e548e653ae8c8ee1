#include "guest-init/signals.h"

#include "guest-init/klib.h"
#include "guest-init/platform.h"

namespace ember::guest {

using namespace lx;

namespace {
constexpr uint64_t kUnblockable = (1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1));
constexpr uint64_t kRedZone = 128;
constexpr uint64_t kSiginfoSize = 128;
constexpr uint64_t kUcontextSize = 1024;  // glibc's ucontext_t is 936 bytes; left zero

bool default_is_ignore(uint32_t sig) {
  return sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH || sig == SIGSTOP ||
         sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}
}  // namespace

SysResult Signals::action(uint32_t sig, const KernelSigaction* act, KernelSigaction* old) {
  if (sig < 1 || sig > NSIG) return EINVAL;
  if (act && (sig == SIGKILL || sig == SIGSTOP)) return EINVAL;
  if (old) *old = actions_[sig];
  if (act) {
    actions_[sig] = *act;
    actions_[sig].mask &= ~kUnblockable;
  }
  return SysResult::ok(0);
}

SysResult Signals::procmask(uint32_t how, const uint64_t* set, uint64_t* old, SyscallFrame* frame) {
  const uint64_t before = blocked_;
  if (set) {
    switch (how) {
      case SIG_BLOCK: blocked_ |= *set; break;
      case SIG_UNBLOCK: blocked_ &= ~*set; break;
      case SIG_SETMASK: blocked_ = *set; break;
      default: return EINVAL;
    }
    blocked_ &= ~kUnblockable;
  }
  if (old) *old = before;
  deliver_pending(frame);
  return SysResult::ok(0);
}

SysResult Signals::altstack(const StackT* ss, StackT* old, SyscallFrame*) {
  StackT before = altstack_;
  if (before.size == 0) before.flags = SS_DISABLE;
  if (on_altstack_) before.flags |= SS_ONSTACK;
  if (ss) {
    if (on_altstack_) return EPERM;
    if (ss->flags & SS_DISABLE) {
      altstack_ = StackT{};
    } else {
      if (ss->flags & ~SS_ONSTACK) return EINVAL;
      if (ss->size < 2048) return ENOMEM;
      altstack_ = StackT{ss->sp, 0, 0, ss->size};
    }
  }
  if (old) *old = before;
  return SysResult::ok(0);
}

void Signals::send(uint32_t sig, SyscallFrame* frame) {
  if (sig == 0) return;
  if (blocked_ & bit(sig)) {
    pending_ |= bit(sig);
    return;
  }
  act(sig, frame);
}

void Signals::deliver_pending(SyscallFrame* frame) {
  while (uint64_t ready = pending_ & ~blocked_) {
    uint32_t sig = static_cast<uint32_t>(lowest_bit(ready)) + 1;
    pending_ &= ~bit(sig);
    act(sig, frame);
  }
}

void Signals::act(uint32_t sig, SyscallFrame* frame) {
  const KernelSigaction sa = actions_[sig];
  if (sig == SIGKILL) g_platform.die_by_signal(sig);
  if (sa.handler == SIG_IGN) return;
  if (sa.handler == SIG_DFL) {
    if (default_is_ignore(sig)) return;
    g_platform.die_by_signal(sig);
  }
  // A handler: called right here, synchronously, on the program's stack
  // (below its red zone) or its alternate stack.
  if (sa.flags & SA_RESETHAND) actions_[sig].handler = SIG_DFL;
  const uint64_t saved_mask = blocked_;
  blocked_ |= sa.mask;
  if (!(sa.flags & SA_NODEFER)) blocked_ |= bit(sig);
  blocked_ &= ~kUnblockable;
  const bool use_alt = (sa.flags & SA_ONSTACK) && altstack_.size != 0 && !on_altstack_;
  uint64_t top = use_alt ? altstack_.sp + altstack_.size : frame->user_rsp - kRedZone;
  top &= ~uint64_t{15};
  const uint64_t info = top - kSiginfoSize, uc = info - kUcontextSize;
  memset(reinterpret_cast<void*>(uc), 0, kUcontextSize + kSiginfoSize);
  int32_t* si = reinterpret_cast<int32_t*>(info);
  si[0] = static_cast<int32_t>(sig);  // si_signo
  si[2] = SI_TKILL;                   // si_code
  si[4] = 1;                          // si_pid
  const uint64_t sp = uc & ~uint64_t{15};
  const uint32_t depth = ember_signal_depth;
  if (depth == kMaxDepth) g_platform.die_by_signal(sig);  // handlers raising forever: a stack overflow on Linux
  // The handler's stack: everything below `top` down to the alternate
  // stack's base, or (on the program's stack) down to wherever it grows.
  running_[depth] = Running{use_alt ? altstack_.sp : 0, top, saved_mask, on_altstack_};
  on_altstack_ = on_altstack_ || use_alt;
  ember_signal_depth = depth + 1;
  ember_call_on_stack(sa.handler, sig, info, uc, sp);
  ember_signal_depth = depth;
  on_altstack_ = running_[depth].saved_on_altstack;
  blocked_ = saved_mask;
  deliver_pending(frame);
}

void Signals::check_abandoned_slow(uint64_t user_rsp) {
  // A syscall from outside the innermost handler's stack means the program
  // jumped out of it: forget it (and restore what it changed).
  while (ember_signal_depth) {
    const Running& r = running_[ember_signal_depth - 1];
    if (user_rsp >= r.stack_lo && user_rsp < r.stack_hi) return;
    ember_signal_depth--;
    on_altstack_ = r.saved_on_altstack;
    // The mask stays as the program has it now: siglongjmp restores its own
    // (via rt_sigprocmask) and longjmp keeps the handler's, as on Linux.
  }
}

}  // namespace ember::guest

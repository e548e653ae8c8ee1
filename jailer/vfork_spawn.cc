#include "jailer/vfork_spawn.h"

#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstdint>

namespace ember::jail {

namespace {

// struct clone_args (linux/sched.h), version 2 (with cgroup).
struct CloneArgs {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};
constexpr uint64_t kCloneIntoCgroup = 0x200000000ull;

}  // namespace

pid_t spawn_sharing_memory(void (*fn)(void*), void* arg, void* stack, size_t stack_size, int cgroup_fd,
                           bool sibling) {
  // The kernel starts the child at the instruction after `syscall` with
  // %rsp = stack + stack_size and every other register as the parent's but
  // %rax (0), %rcx and %r11: fn and arg ride in callee-saved registers, and
  // the child never returns into this frame (it is the parent's).
  const uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + stack_size) & ~uintptr_t{15};
  CloneArgs args{};
  args.flags = CLONE_VM | CLONE_VFORK | (cgroup_fd >= 0 ? kCloneIntoCgroup : 0) | (sibling ? CLONE_PARENT : 0);
  // With CLONE_PARENT clone3 takes no exit signal: the child gets this
  // process's own (SIGCHLD, as every process started by fork or spawn).
  args.exit_signal = sibling ? 0 : SIGCHLD;
  args.stack = reinterpret_cast<uintptr_t>(stack);
  args.stack_size = top - reinterpret_cast<uintptr_t>(stack);
  args.cgroup = cgroup_fd >= 0 ? static_cast<uint64_t>(cgroup_fd) : 0;
  register void (*r12)(void*) asm("r12") = fn;
  register void* r13 asm("r13") = arg;
  long ret = SYS_clone3;
  asm volatile(
      "syscall\n\t"
      "testq %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "xorl %%ebp, %%ebp\n\t"  // the child: no frame above it
      "movq %%r13, %%rdi\n\t"
      "callq *%%r12\n\t"
      "movl $127, %%edi\n\t"
      "movl %[exit], %%eax\n\t"
      "syscall\n\t"
      "1:\n\t"
      : "+a"(ret)
      : "D"(&args), "S"(sizeof args), "r"(r12), "r"(r13), [exit] "i"(SYS_exit_group)
      : "rcx", "r11", "memory");
  if (ret < 0) {
    errno = static_cast<int>(-ret);
    return -1;
  }
  return static_cast<pid_t>(ret);
}

}  // namespace ember::jail

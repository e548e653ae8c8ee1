// The Linux syscall ABI. entry.S saves the registers into a SyscallFrame and
// calls ember_syscall(nr, frame), which looks the number up in the table
// (syscalls.cc: one line per syscall) and turns the handler's SysResult into
// the return value: the one place where an errno becomes -errno.
#pragma once

#include <stdint.h>

#include "guest-init/linux_abi.h"

namespace ember::guest {

// Laid out by entry.S (pushed in reverse).
struct SyscallFrame {
  uint64_t r9, r8, r10, rdx, rsi, rdi;
  uint64_t rip;      // rcx at entry
  uint64_t rflags;   // r11 at entry
  uint64_t user_rsp;
};

struct SyscallArgs {
  uint64_t a[6];
  SyscallFrame* frame;
  uint32_t nr;
};

class SysResult {
 public:
  static SysResult ok(uint64_t v) { return SysResult(v, 0); }
  static SysResult err(lx::Errno e) { return SysResult(0, e); }
  SysResult(lx::Errno e) : value_(0), errno_(e) {}  // so handlers can `return lx::ENOENT;`
  bool failed() const { return errno_ != 0; }
  int32_t error() const { return errno_; }
  uint64_t value() const { return value_; }

 private:
  SysResult(uint64_t v, int32_t e) : value_(v), errno_(e) {}
  uint64_t value_;
  int32_t errno_;
};

using SyscallHandler = SysResult (*)(const SyscallArgs&);

struct SyscallDef {
  uint32_t nr;
  const char* name;
  SyscallHandler handler;
};

// Handlers, grouped by file.
#define EMBER_SYSCALL(name) SysResult sys_##name([[maybe_unused]] const SyscallArgs& a)
// sys_io.cc
EMBER_SYSCALL(read); EMBER_SYSCALL(write); EMBER_SYSCALL(readv); EMBER_SYSCALL(writev);
EMBER_SYSCALL(pread64); EMBER_SYSCALL(pwrite64); EMBER_SYSCALL(open); EMBER_SYSCALL(openat);
EMBER_SYSCALL(close); EMBER_SYSCALL(lseek); EMBER_SYSCALL(fstat); EMBER_SYSCALL(stat); EMBER_SYSCALL(lstat);
EMBER_SYSCALL(newfstatat); EMBER_SYSCALL(statx); EMBER_SYSCALL(access); EMBER_SYSCALL(faccessat);
EMBER_SYSCALL(faccessat2); EMBER_SYSCALL(ioctl); EMBER_SYSCALL(fcntl); EMBER_SYSCALL(dup); EMBER_SYSCALL(dup2);
EMBER_SYSCALL(dup3); EMBER_SYSCALL(getdents64); EMBER_SYSCALL(getcwd); EMBER_SYSCALL(chdir);
EMBER_SYSCALL(fchdir); EMBER_SYSCALL(readlink); EMBER_SYSCALL(readlinkat); EMBER_SYSCALL(poll);
EMBER_SYSCALL(ppoll); EMBER_SYSCALL(fsync); EMBER_SYSCALL(fadvise64); EMBER_SYSCALL(flock);
EMBER_SYSCALL(statfs); EMBER_SYSCALL(fstatfs); EMBER_SYSCALL(ftruncate); EMBER_SYSCALL(sendfile); EMBER_SYSCALL(select); EMBER_SYSCALL(pselect6);
// sys_mem.cc
EMBER_SYSCALL(brk); EMBER_SYSCALL(mmap); EMBER_SYSCALL(munmap); EMBER_SYSCALL(mprotect);
EMBER_SYSCALL(madvise); EMBER_SYSCALL(mremap); EMBER_SYSCALL(msync); EMBER_SYSCALL(mlock);
// sys_proc.cc
EMBER_SYSCALL(exit); EMBER_SYSCALL(exit_group); EMBER_SYSCALL(arch_prctl); EMBER_SYSCALL(set_tid_address);
EMBER_SYSCALL(set_robust_list); EMBER_SYSCALL(get_robust_list); EMBER_SYSCALL(rseq); EMBER_SYSCALL(prlimit64);
EMBER_SYSCALL(getrlimit); EMBER_SYSCALL(setrlimit); EMBER_SYSCALL(getpid); EMBER_SYSCALL(gettid);
EMBER_SYSCALL(getppid); EMBER_SYSCALL(getuid); EMBER_SYSCALL(zero); EMBER_SYSCALL(uname); EMBER_SYSCALL(umask);
EMBER_SYSCALL(sysinfo); EMBER_SYSCALL(getrusage); EMBER_SYSCALL(times); EMBER_SYSCALL(sched_getaffinity);
EMBER_SYSCALL(sched_setaffinity); EMBER_SYSCALL(sched_yield); EMBER_SYSCALL(getrandom); EMBER_SYSCALL(futex);
EMBER_SYSCALL(clock_gettime); EMBER_SYSCALL(clock_getres); EMBER_SYSCALL(gettimeofday); EMBER_SYSCALL(time);
EMBER_SYSCALL(nanosleep); EMBER_SYSCALL(clock_nanosleep); EMBER_SYSCALL(rt_sigaction);
EMBER_SYSCALL(rt_sigprocmask); EMBER_SYSCALL(sigaltstack); EMBER_SYSCALL(kill); EMBER_SYSCALL(tkill);
EMBER_SYSCALL(tgkill); EMBER_SYSCALL(getgroups); EMBER_SYSCALL(prctl); EMBER_SYSCALL(getpgid);
EMBER_SYSCALL(setpgid); EMBER_SYSCALL(setsid); EMBER_SYSCALL(pause); EMBER_SYSCALL(membarrier);
EMBER_SYSCALL(sched_getparam); EMBER_SYSCALL(sched_getscheduler); EMBER_SYSCALL(alarm);
EMBER_SYSCALL(setitimer); EMBER_SYSCALL(getitimer); EMBER_SYSCALL(rt_sigreturn);
EMBER_SYSCALL(wait4); EMBER_SYSCALL(getresuid); EMBER_SYSCALL(getcpu); EMBER_SYSCALL(getpriority);


// Checks that [p, p + n) is a plausible program buffer (not NULL, no
// wrap-around). The VM is the isolation boundary; this turns obvious bad
// pointers into EFAULT instead of a fault in the runtime.
bool user_ok(uint64_t p, uint64_t n);

}  // namespace ember::guest

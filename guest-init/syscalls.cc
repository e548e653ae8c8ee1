// The syscall table (data: number, name, handler) and the dispatcher.
#include "guest-init/syscalls.h"

#include "guest-init/stdio.h"
#include "guest-init/klib.h"
#include "guest-init/platform.h"
#include "guest-init/runtime.h"

namespace ember::guest {

using namespace lx;

void syscall_table_entry_is_bad();  // never defined: see make_table()

namespace {

// One line per syscall. Aliases share a handler (sys_zero: "0, nothing to
// do" for ids and no-op calls).
constexpr SyscallDef kSyscalls[] = {
    {SYS_read, "read", sys_read},
    {SYS_write, "write", sys_write},
    {SYS_open, "open", sys_open},
    {SYS_close, "close", sys_close},
    {SYS_stat, "stat", sys_stat},
    {SYS_fstat, "fstat", sys_fstat},
    {SYS_lstat, "lstat", sys_lstat},
    {SYS_poll, "poll", sys_poll},
    {SYS_lseek, "lseek", sys_lseek},
    {SYS_mmap, "mmap", sys_mmap},
    {SYS_mprotect, "mprotect", sys_mprotect},
    {SYS_munmap, "munmap", sys_munmap},
    {SYS_brk, "brk", sys_brk},
    {SYS_rt_sigaction, "rt_sigaction", sys_rt_sigaction},
    {SYS_rt_sigprocmask, "rt_sigprocmask", sys_rt_sigprocmask},
    {SYS_rt_sigreturn, "rt_sigreturn", sys_rt_sigreturn},
    {SYS_ioctl, "ioctl", sys_ioctl},
    {SYS_pread64, "pread64", sys_pread64},
    {SYS_pwrite64, "pwrite64", sys_pwrite64},
    {SYS_readv, "readv", sys_readv},
    {SYS_writev, "writev", sys_writev},
    {SYS_access, "access", sys_access},
    {SYS_select, "select", sys_select},
    {SYS_sched_yield, "sched_yield", sys_sched_yield},
    {SYS_mremap, "mremap", sys_mremap},
    {SYS_msync, "msync", sys_msync},
    {SYS_madvise, "madvise", sys_madvise},
    {SYS_dup, "dup", sys_dup},
    {SYS_dup2, "dup2", sys_dup2},
    {SYS_pause, "pause", sys_pause},
    {SYS_nanosleep, "nanosleep", sys_nanosleep},
    {SYS_getitimer, "getitimer", sys_getitimer},
    {SYS_alarm, "alarm", sys_alarm},
    {SYS_setitimer, "setitimer", sys_setitimer},
    {SYS_getpid, "getpid", sys_getpid},
    {SYS_sendfile, "sendfile", sys_sendfile},
    {SYS_exit, "exit", sys_exit},
    {SYS_wait4, "wait4", sys_wait4},
    {SYS_kill, "kill", sys_kill},
    {SYS_uname, "uname", sys_uname},
    {SYS_fcntl, "fcntl", sys_fcntl},
    {SYS_flock, "flock", sys_flock},
    {SYS_fsync, "fsync", sys_fsync},
    {SYS_fdatasync, "fdatasync", sys_fsync},
    {SYS_ftruncate, "ftruncate", sys_ftruncate},
    {SYS_getcwd, "getcwd", sys_getcwd},
    {SYS_chdir, "chdir", sys_chdir},
    {SYS_fchdir, "fchdir", sys_fchdir},
    {SYS_readlink, "readlink", sys_readlink},
    {SYS_umask, "umask", sys_umask},
    {SYS_gettimeofday, "gettimeofday", sys_gettimeofday},
    {SYS_getrlimit, "getrlimit", sys_getrlimit},
    {SYS_getrusage, "getrusage", sys_getrusage},
    {SYS_sysinfo, "sysinfo", sys_sysinfo},
    {SYS_times, "times", sys_times},
    {SYS_getuid, "getuid", sys_getuid},
    {SYS_getgid, "getgid", sys_zero},
    {SYS_setuid, "setuid", sys_zero},
    {SYS_setgid, "setgid", sys_zero},
    {SYS_setresuid, "setresuid", sys_zero},
    {SYS_setresgid, "setresgid", sys_zero},
    {SYS_getresuid, "getresuid", sys_getresuid},
    {SYS_getresgid, "getresgid", sys_getresuid},
    {SYS_getpriority, "getpriority", sys_getpriority},
    {SYS_setpriority, "setpriority", sys_zero},
    {SYS_geteuid, "geteuid", sys_zero},
    {SYS_getegid, "getegid", sys_zero},
    {SYS_setpgid, "setpgid", sys_setpgid},
    {SYS_getppid, "getppid", sys_getppid},
    {SYS_getpgrp, "getpgrp", sys_getpgid},
    {SYS_setsid, "setsid", sys_setsid},
    {SYS_getgroups, "getgroups", sys_getgroups},
    {SYS_getpgid, "getpgid", sys_getpgid},
    {SYS_getsid, "getsid", sys_getpgid},
    {SYS_sigaltstack, "sigaltstack", sys_sigaltstack},
    {SYS_statfs, "statfs", sys_statfs},
    {SYS_fstatfs, "fstatfs", sys_fstatfs},
    {SYS_sched_getparam, "sched_getparam", sys_sched_getparam},
    {SYS_sched_getscheduler, "sched_getscheduler", sys_sched_getscheduler},
    {SYS_mlock, "mlock", sys_mlock},
    {SYS_munlock, "munlock", sys_mlock},
    {SYS_prctl, "prctl", sys_prctl},
    {SYS_arch_prctl, "arch_prctl", sys_arch_prctl},
    {SYS_setrlimit, "setrlimit", sys_setrlimit},
    {SYS_gettid, "gettid", sys_gettid},
    {SYS_tkill, "tkill", sys_tkill},
    {SYS_time, "time", sys_time},
    {SYS_futex, "futex", sys_futex},
    {SYS_sched_setaffinity, "sched_setaffinity", sys_sched_setaffinity},
    {SYS_sched_getaffinity, "sched_getaffinity", sys_sched_getaffinity},
    {SYS_getdents64, "getdents64", sys_getdents64},
    {SYS_set_tid_address, "set_tid_address", sys_set_tid_address},
    {SYS_fadvise64, "fadvise64", sys_fadvise64},
    {SYS_clock_gettime, "clock_gettime", sys_clock_gettime},
    {SYS_clock_getres, "clock_getres", sys_clock_getres},
    {SYS_clock_nanosleep, "clock_nanosleep", sys_clock_nanosleep},
    {SYS_exit_group, "exit_group", sys_exit_group},
    {SYS_tgkill, "tgkill", sys_tgkill},
    {SYS_openat, "openat", sys_openat},
    {SYS_newfstatat, "newfstatat", sys_newfstatat},
    {SYS_readlinkat, "readlinkat", sys_readlinkat},
    {SYS_faccessat, "faccessat", sys_faccessat},
    {SYS_pselect6, "pselect6", sys_pselect6},
    {SYS_ppoll, "ppoll", sys_ppoll},
    {SYS_set_robust_list, "set_robust_list", sys_set_robust_list},
    {SYS_get_robust_list, "get_robust_list", sys_get_robust_list},
    {SYS_dup3, "dup3", sys_dup3},
    {SYS_prlimit64, "prlimit64", sys_prlimit64},
    {SYS_getcpu, "getcpu", sys_getcpu},
    {SYS_getrandom, "getrandom", sys_getrandom},
    {SYS_membarrier, "membarrier", sys_membarrier},
    {SYS_statx, "statx", sys_statx},
    {SYS_rseq, "rseq", sys_rseq},
    {SYS_faccessat2, "faccessat2", sys_faccessat2},
};

struct Table {
  SyscallHandler handler[kSyscallMax];
  const char* name[kSyscallMax];
};

// Dense lookup built at compile time from the list above: a duplicate or an
// out-of-range number calls this non-constexpr function, which fails the
// build.
constexpr Table make_table() {
  Table t{};
  for (const SyscallDef& d : kSyscalls) {
    if (d.nr >= kSyscallMax || t.handler[d.nr] != nullptr) syscall_table_entry_is_bad();
    t.handler[d.nr] = d.handler;
    t.name[d.nr] = d.name;
  }
  return t;
}
constexpr Table kTable = make_table();

constinit uint64_t g_unknown_logged[kSyscallMax / 64 + 1] = {};

void log_unknown(uint64_t nr) {
  const uint64_t slot = nr < kSyscallMax ? nr : kSyscallMax;
  if (g_unknown_logged[slot / 64] & (1ull << (slot % 64))) return;
  g_unknown_logged[slot / 64] |= 1ull << (slot % 64);
  char line[96];
  TextBuf t(line, sizeof line);
  t.str("unimplemented syscall ").udec(nr).str(": returning -ENOSYS");
  g_platform.log(LogLevel::kWarning, t);
}

}  // namespace

const char* syscall_name(uint64_t nr) { return nr < kSyscallMax ? kTable.name[nr] : nullptr; }

}  // namespace ember::guest

// Called by entry.S with the syscall number and the saved registers.
extern "C" int64_t ember_syscall(uint64_t nr, ember::guest::SyscallFrame* frame) {
  using namespace ember::guest;
  g_stats.syscalls++;
  g_stdio.flush_due();  // output whose notification was deferred too long
  g_rt.signals.check_abandoned(frame->user_rsp);
  SyscallHandler h = nr < lx::kSyscallMax ? kTable.handler[nr] : nullptr;
  if (!h) {
    log_unknown(nr);
    return -lx::ENOSYS;
  }
  SyscallArgs args{{frame->rdi, frame->rsi, frame->rdx, frame->r10, frame->r8, frame->r9},
                   frame,
                   static_cast<uint32_t>(nr)};
  SysResult r = h(args);
  // The one place an errno becomes -errno.
  return r.failed() ? -static_cast<int64_t>(r.error()) : static_cast<int64_t>(r.value());
}

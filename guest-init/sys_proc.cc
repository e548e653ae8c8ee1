// Process, identity, time, randomness and signal syscalls for the one
// single-threaded process the guest runs.
#include "guest-init/stdio.h"
#include "guest-init/klib.h"
#include "guest-init/platform.h"
#include "guest-init/procfs.h"
#include "guest-init/runtime.h"
#include "guest-init/syscalls.h"

namespace ember::guest {

using namespace lx;

namespace {

constexpr uint64_t kNsPerSec = 1000000000ull;

bool read_timespec(uint64_t p, uint64_t* ns) {
  const Timespec* ts = user_ptr<const Timespec>(p);
  if (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= static_cast<int64_t>(kNsPerSec)) return false;
  const uint64_t sec = static_cast<uint64_t>(ts->tv_sec);
  *ns = sec > (~0ull / kNsPerSec) - 1 ? ~0ull : sec * kNsPerSec + static_cast<uint64_t>(ts->tv_nsec);
  return true;
}

void write_timespec(uint64_t p, uint64_t ns) {
  Timespec* ts = user_ptr<Timespec>(p);
  ts->tv_sec = static_cast<int64_t>(ns / kNsPerSec);
  ts->tv_nsec = static_cast<int64_t>(ns % kNsPerSec);
}

// The clock a clockid reads, in ns; false for an unknown clock.
bool clock_now(int64_t id, uint64_t* ns) {
  if (id < 0) {  // CPU-time clocks of a pid/thread: ours is all the CPU time there is
    *ns = g_rt.clock.monotonic_ns();
    return true;
  }
  switch (static_cast<uint32_t>(id)) {
    case CLOCK_REALTIME:
    case CLOCK_REALTIME_COARSE:
    case CLOCK_REALTIME_ALARM:
    case CLOCK_TAI: *ns = g_rt.clock.realtime_ns(); return true;
    case CLOCK_MONOTONIC:
    case CLOCK_MONOTONIC_RAW:
    case CLOCK_MONOTONIC_COARSE:
    case CLOCK_BOOTTIME:
    case CLOCK_BOOTTIME_ALARM:
    case CLOCK_PROCESS_CPUTIME_ID:
    case CLOCK_THREAD_CPUTIME_ID: *ns = g_rt.clock.monotonic_ns(); return true;
    default: return false;
  }
}

// Sleeps halt on the LAPIC TSC-deadline timer (short ones spin).
void sleep_ns(uint64_t ns) {
  g_stdio.flush_all();  // nobody should wait for our output while we sleep
  const uint64_t now = g_rt.clock.monotonic_ns();
  g_rt.clock.sleep_until(ns > ~0ull - now ? ~0ull : now + ns);
}

[[noreturn]] void sleep_forever() {
  g_stdio.flush_all();
  static volatile uint16_t never = 0;
  for (;;) g_platform.wait_word(&never, 0);
}

void copy_field(char* dst, const char* src) {
  size_t n = strlen(src);
  memcpy(dst, src, n + 1);
}

}  // namespace

EMBER_SYSCALL(exit) { g_platform.exit_program(static_cast<uint32_t>(a.a[0])); }
EMBER_SYSCALL(exit_group) { g_platform.exit_program(static_cast<uint32_t>(a.a[0])); }

EMBER_SYSCALL(arch_prctl) {
  const uint64_t v = a.a[1];
  switch (static_cast<uint32_t>(a.a[0])) {
    case ARCH_SET_FS:
      if (v >= (1ull << 47)) return EPERM;
      // MSR_FS_BASE needs ring 0 (no FSGSBASE here): one trip through the
      // wait gate, 8 ring-0 instructions.
      g_stats.gate_other++;
      ember_gate_set_fs(v);
      g_rt.fs_base = v;
      return SysResult::ok(0);
    case ARCH_GET_FS:
      if (!user_ok(v, 8)) return EFAULT;
      *user_ptr<uint64_t>(v) = g_rt.fs_base;
      return SysResult::ok(0);
    case ARCH_GET_GS:
      if (!user_ok(v, 8)) return EFAULT;
      *user_ptr<uint64_t>(v) = g_rt.gs_base;
      return SysResult::ok(0);
    case ARCH_SET_GS: return EPERM;  // nothing uses it in x86-64 user space
    default: return EINVAL;
  }
}

EMBER_SYSCALL(set_tid_address) {
  g_rt.tid_address = a.a[0];
  return SysResult::ok(1);
}
EMBER_SYSCALL(set_robust_list) { return a.a[1] == 24 ? SysResult::ok(0) : SysResult(EINVAL); }
EMBER_SYSCALL(get_robust_list) {
  if (a.a[1] && user_ok(a.a[1], 8)) *user_ptr<uint64_t>(a.a[1]) = 0;
  if (a.a[2] && user_ok(a.a[2], 8)) *user_ptr<uint64_t>(a.a[2]) = 24;
  return SysResult::ok(0);
}
EMBER_SYSCALL(rseq) { return ENOSYS; }  // libcs carry on without it

EMBER_SYSCALL(prlimit64) {
  const int64_t pid = static_cast<int64_t>(a.a[0]);
  const uint32_t res = static_cast<uint32_t>(a.a[1]);
  if (pid != 0 && pid != 1) return ESRCH;
  if (res >= RLIMIT_NLIMITS) return EINVAL;
  if (a.a[3]) {
    if (!user_ok(a.a[3], sizeof(Rlimit))) return EFAULT;
    *user_ptr<Rlimit>(a.a[3]) = g_rt.rlimits[res];
  }
  if (a.a[2]) {
    if (!user_ok(a.a[2], sizeof(Rlimit))) return EFAULT;
    Rlimit n = *user_ptr<const Rlimit>(a.a[2]);
    if (n.cur > n.max) return EINVAL;
    g_rt.rlimits[res] = n;  // recorded, not enforced
  }
  return SysResult::ok(0);
}
EMBER_SYSCALL(getrlimit) {
  SyscallArgs b = a;
  b.a[0] = 0, b.a[1] = a.a[0], b.a[2] = 0, b.a[3] = a.a[1];
  return sys_prlimit64(b);
}
EMBER_SYSCALL(setrlimit) {
  SyscallArgs b = a;
  b.a[0] = 0, b.a[1] = a.a[0], b.a[2] = a.a[1], b.a[3] = 0;
  return sys_prlimit64(b);
}

EMBER_SYSCALL(getpid) { return SysResult::ok(1); }
EMBER_SYSCALL(gettid) { return SysResult::ok(1); }
EMBER_SYSCALL(getppid) { return SysResult::ok(0); }
EMBER_SYSCALL(getuid) { return SysResult::ok(0); }
EMBER_SYSCALL(zero) { return SysResult::ok(0); }
EMBER_SYSCALL(getpgid) { return SysResult::ok(1); }
EMBER_SYSCALL(setpgid) { return SysResult::ok(0); }
EMBER_SYSCALL(setsid) { return EPERM; }  // already a process-group leader
EMBER_SYSCALL(getgroups) { return SysResult::ok(0); }

EMBER_SYSCALL(uname) {
  if (!user_ok(a.a[0], sizeof(Utsname))) return EFAULT;
  Utsname* u = user_ptr<Utsname>(a.a[0]);
  memset(u, 0, sizeof *u);
  copy_field(u->sysname, "Linux");
  copy_field(u->nodename, kUtsNodename);
  copy_field(u->release, kUtsRelease);
  copy_field(u->version, "#1 SMP PREEMPT_DYNAMIC Ember");
  copy_field(u->machine, "x86_64");
  copy_field(u->domainname, "(none)");
  return SysResult::ok(0);
}

EMBER_SYSCALL(umask) {
  uint32_t old = g_rt.umask;
  g_rt.umask = static_cast<uint32_t>(a.a[0]) & 0777;
  return SysResult::ok(old);
}

EMBER_SYSCALL(sysinfo) {
  if (!user_ok(a.a[0], sizeof(Sysinfo))) return EFAULT;
  Sysinfo* s = user_ptr<Sysinfo>(a.a[0]);
  memset(s, 0, sizeof *s);
  s->uptime = static_cast<int64_t>(g_rt.clock.monotonic_ns() / kNsPerSec);
  s->totalram = g_platform.boot().mem_size;
  const AddressSpace& m = g_rt.mem;
  s->freeram = m.mmap_low() > m.brk_current() ? m.mmap_low() - m.brk_current() : 0;
  s->procs = 1;
  s->mem_unit = 1;
  return SysResult::ok(0);
}

EMBER_SYSCALL(getrusage) {
  if (!user_ok(a.a[1], sizeof(Rusage))) return EFAULT;
  Rusage* r = user_ptr<Rusage>(a.a[1]);
  memset(r, 0, sizeof *r);
  if (static_cast<int64_t>(a.a[0]) != -1) {  // not RUSAGE_CHILDREN
    const uint64_t ns = g_rt.clock.monotonic_ns();
    r->utime.tv_sec = static_cast<int64_t>(ns / kNsPerSec);
    r->utime.tv_usec = static_cast<int64_t>(ns % kNsPerSec / 1000);
  }
  return SysResult::ok(0);
}

EMBER_SYSCALL(times) {
  const uint64_t ticks = g_rt.clock.monotonic_ns() / 10000000ull;  // CLK_TCK 100
  if (a.a[0]) {
    if (!user_ok(a.a[0], sizeof(Tms))) return EFAULT;
    Tms* t = user_ptr<Tms>(a.a[0]);
    t->utime = static_cast<int64_t>(ticks), t->stime = 0, t->cutime = 0, t->cstime = 0;
  }
  return SysResult::ok(ticks);
}

EMBER_SYSCALL(sched_getaffinity) {
  const uint64_t size = a.a[1];
  if (size < 8 || size % 8) return EINVAL;
  if (!user_ok(a.a[2], size)) return EFAULT;
  memset(user_ptr<void>(a.a[2]), 0, size);
  *user_ptr<uint64_t>(a.a[2]) = 1;  // one CPU
  return SysResult::ok(8);
}
EMBER_SYSCALL(sched_setaffinity) { return SysResult::ok(0); }
EMBER_SYSCALL(sched_yield) { return SysResult::ok(0); }
EMBER_SYSCALL(sched_getparam) {
  if (!user_ok(a.a[1], 4)) return EFAULT;
  *user_ptr<int32_t>(a.a[1]) = 0;
  return SysResult::ok(0);
}
EMBER_SYSCALL(sched_getscheduler) { return SysResult::ok(0); }  // SCHED_OTHER

EMBER_SYSCALL(getrandom) {
  const uint64_t n = a.a[1];
  if (a.a[2] & ~uint64_t{GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE}) return EINVAL;
  if (n == 0) return SysResult::ok(0);
  if (!user_ok(a.a[0], n)) return EFAULT;
  random_bytes(user_ptr<void>(a.a[0]), n);
  return SysResult::ok(n);
}

EMBER_SYSCALL(futex) {
  const uint32_t cmd = static_cast<uint32_t>(a.a[1]) & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
  const uint32_t val = static_cast<uint32_t>(a.a[2]);
  switch (cmd) {
    case FUTEX_WAKE:
    case FUTEX_WAKE_BITSET:
    case FUTEX_WAKE_OP:
    case FUTEX_REQUEUE: return SysResult::ok(0);  // one thread: nobody waits
    case FUTEX_CMP_REQUEUE:
      if (!user_ok(a.a[0], 4)) return EFAULT;
      return *user_ptr<volatile uint32_t>(a.a[0]) == static_cast<uint32_t>(a.a[5]) ? SysResult::ok(0)
                                                                                  : SysResult(EAGAIN);
    case FUTEX_WAIT:
    case FUTEX_WAIT_BITSET: {
      if (!user_ok(a.a[0], 4)) return EFAULT;
      if (*user_ptr<volatile uint32_t>(a.a[0]) != val) return EAGAIN;
      if (a.a[3]) {
        if (!user_ok(a.a[3], sizeof(Timespec))) return EFAULT;
        uint64_t t;
        if (!read_timespec(a.a[3], &t)) return EINVAL;
        if (cmd == FUTEX_WAIT_BITSET) {  // absolute
          uint64_t now;
          clock_now((static_cast<uint32_t>(a.a[1]) & FUTEX_CLOCK_REALTIME) ? CLOCK_REALTIME : CLOCK_MONOTONIC, &now);
          t = t > now ? t - now : 0;
        }
        sleep_ns(t);
        return ETIMEDOUT;
      }
      // No other thread can ever wake us: a deadlock, as on Linux it would
      // hang; say so once, then sleep until the VMM's deadline.
      char line[80];
      TextBuf tb(line, sizeof line);
      tb.str("futex wait with a single thread at ").hex(a.a[0]).str(": deadlock");
      g_platform.log(LogLevel::kError, tb);
      sleep_forever();
    }
    default: return ENOSYS;
  }
}

EMBER_SYSCALL(clock_gettime) {
  uint64_t ns;
  if (!clock_now(static_cast<int64_t>(static_cast<int32_t>(a.a[0])), &ns)) return EINVAL;
  if (!user_ok(a.a[1], sizeof(Timespec))) return EFAULT;
  write_timespec(a.a[1], ns);
  return SysResult::ok(0);
}

EMBER_SYSCALL(clock_getres) {
  uint64_t ns;
  if (!clock_now(static_cast<int64_t>(static_cast<int32_t>(a.a[0])), &ns)) return EINVAL;
  if (a.a[1]) {
    if (!user_ok(a.a[1], sizeof(Timespec))) return EFAULT;
    write_timespec(a.a[1], 1);
  }
  return SysResult::ok(0);
}

EMBER_SYSCALL(gettimeofday) {
  if (a.a[0]) {
    if (!user_ok(a.a[0], sizeof(Timeval))) return EFAULT;
    const uint64_t ns = g_rt.clock.realtime_ns();
    Timeval* tv = user_ptr<Timeval>(a.a[0]);
    tv->tv_sec = static_cast<int64_t>(ns / kNsPerSec);
    tv->tv_usec = static_cast<int64_t>(ns % kNsPerSec / 1000);
  }
  if (a.a[1] && user_ok(a.a[1], 8)) *user_ptr<uint64_t>(a.a[1]) = 0;  // struct timezone: UTC
  return SysResult::ok(0);
}

EMBER_SYSCALL(time) {
  const uint64_t s = g_rt.clock.realtime_ns() / kNsPerSec;
  if (a.a[0]) {
    if (!user_ok(a.a[0], 8)) return EFAULT;
    *user_ptr<uint64_t>(a.a[0]) = s;
  }
  return SysResult::ok(s);
}

EMBER_SYSCALL(nanosleep) {
  if (!user_ok(a.a[0], sizeof(Timespec))) return EFAULT;
  uint64_t ns;
  if (!read_timespec(a.a[0], &ns)) return EINVAL;
  sleep_ns(ns);
  if (a.a[1] && user_ok(a.a[1], sizeof(Timespec))) write_timespec(a.a[1], 0);
  return SysResult::ok(0);
}

EMBER_SYSCALL(clock_nanosleep) {
  const int64_t id = static_cast<int32_t>(a.a[0]);
  uint64_t now;
  if (!clock_now(id, &now)) return EINVAL;
  if (!user_ok(a.a[2], sizeof(Timespec))) return EFAULT;
  uint64_t ns;
  if (!read_timespec(a.a[2], &ns)) return EINVAL;
  if (a.a[1] & TIMER_ABSTIME) ns = ns > now ? ns - now : 0;
  sleep_ns(ns);
  if (!(a.a[1] & TIMER_ABSTIME) && a.a[3] && user_ok(a.a[3], sizeof(Timespec))) write_timespec(a.a[3], 0);
  return SysResult::ok(0);
}

EMBER_SYSCALL(rt_sigaction) {
  if (a.a[3] != 8) return EINVAL;
  if (a.a[1] && !user_ok(a.a[1], sizeof(KernelSigaction))) return EFAULT;
  if (a.a[2] && !user_ok(a.a[2], sizeof(KernelSigaction))) return EFAULT;
  return g_rt.signals.action(static_cast<uint32_t>(a.a[0]), user_ptr<const KernelSigaction>(a.a[1]),
                             user_ptr<KernelSigaction>(a.a[2]));
}

EMBER_SYSCALL(rt_sigprocmask) {
  if (a.a[3] != 8) return EINVAL;
  if (a.a[1] && !user_ok(a.a[1], 8)) return EFAULT;
  if (a.a[2] && !user_ok(a.a[2], 8)) return EFAULT;
  return g_rt.signals.procmask(static_cast<uint32_t>(a.a[0]), user_ptr<const uint64_t>(a.a[1]),
                               user_ptr<uint64_t>(a.a[2]), a.frame);
}

EMBER_SYSCALL(sigaltstack) {
  if (a.a[0] && !user_ok(a.a[0], sizeof(StackT))) return EFAULT;
  if (a.a[1] && !user_ok(a.a[1], sizeof(StackT))) return EFAULT;
  return g_rt.signals.altstack(user_ptr<const StackT>(a.a[0]), user_ptr<StackT>(a.a[1]), a.frame);
}

namespace {
SysResult send_self(uint64_t sig, SyscallFrame* frame) {
  if (sig > NSIG) return EINVAL;
  g_rt.signals.send(static_cast<uint32_t>(sig), frame);
  return SysResult::ok(0);
}
}  // namespace

EMBER_SYSCALL(kill) {
  const int64_t pid = static_cast<int32_t>(a.a[0]);
  if (pid != 1 && pid != 0 && pid != -1) return ESRCH;  // ourselves, our group, everyone we may signal
  return send_self(a.a[1], a.frame);
}
EMBER_SYSCALL(tkill) {
  if (static_cast<int32_t>(a.a[0]) != 1) return ESRCH;
  return send_self(a.a[1], a.frame);
}
EMBER_SYSCALL(tgkill) {
  if (static_cast<int32_t>(a.a[0]) != 1 || static_cast<int32_t>(a.a[1]) != 1) return ESRCH;
  return send_self(a.a[2], a.frame);
}

EMBER_SYSCALL(prctl) {
  constexpr uint32_t PR_SET_NAME = 15, PR_GET_NAME = 16, PR_SET_VMA = 0x53564d41;
  static char name[16] = "main";
  switch (static_cast<uint32_t>(a.a[0])) {
    case PR_SET_NAME:
      if (!user_ok(a.a[1], 1)) return EFAULT;
      for (int i = 0; i < 15; i++) {
        name[i] = user_ptr<const char>(a.a[1])[i];
        if (!name[i]) break;
      }
      name[15] = 0;
      return SysResult::ok(0);
    case PR_GET_NAME:
      if (!user_ok(a.a[1], 16)) return EFAULT;
      memcpy(user_ptr<char>(a.a[1]), name, 16);
      return SysResult::ok(0);
    case PR_SET_VMA: return SysResult::ok(0);
    default: return EINVAL;
  }
}

EMBER_SYSCALL(pause) { sleep_forever(); }
EMBER_SYSCALL(membarrier) { return SysResult::ok(0); }
EMBER_SYSCALL(alarm) { return SysResult::ok(0); }  // no timers yet: the alarm never fires
EMBER_SYSCALL(setitimer) {
  if (a.a[2] && user_ok(a.a[2], 32)) memset(user_ptr<void>(a.a[2]), 0, 32);
  return SysResult::ok(0);
}
EMBER_SYSCALL(getitimer) {
  if (!user_ok(a.a[1], 32)) return EFAULT;
  memset(user_ptr<void>(a.a[1]), 0, 32);
  return SysResult::ok(0);
}
EMBER_SYSCALL(wait4) { return ECHILD; }  // no children: fork is not supported
EMBER_SYSCALL(getresuid) {
  for (int i = 0; i < 3; i++) {
    if (!user_ok(a.a[i], 4)) return EFAULT;
    *user_ptr<uint32_t>(a.a[i]) = 0;
  }
  return SysResult::ok(0);
}
EMBER_SYSCALL(getcpu) {
  if (a.a[0] && user_ok(a.a[0], 4)) *user_ptr<uint32_t>(a.a[0]) = 0;
  if (a.a[1] && user_ok(a.a[1], 4)) *user_ptr<uint32_t>(a.a[1]) = 0;
  return SysResult::ok(0);
}
EMBER_SYSCALL(getpriority) { return SysResult::ok(20); }  // the kernel's 20 - nice: nice 0

EMBER_SYSCALL(rt_sigreturn) { return ENOSYS; }  // handlers are called, not entered through a frame

}  // namespace ember::guest

// The slice of the Linux x86-64 user ABI the runtime implements: syscall
// numbers, errno values, flags and structure layouts (as in the kernel's
// uapi headers; written out because the guest has no libc headers).
#pragma once

#include <stdint.h>

namespace ember::guest::lx {

// errno
enum Errno : int32_t {
  EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, ENXIO = 6, E2BIG = 7, ENOEXEC = 8, EBADF = 9,
  ECHILD = 10, EAGAIN = 11, ENOMEM = 12, EACCES = 13, EFAULT = 14, EBUSY = 16, EEXIST = 17, EXDEV = 18,
  ENODEV = 19, ENOTDIR = 20, EISDIR = 21, EINVAL = 22, ENFILE = 23, EMFILE = 24, ENOTTY = 25, EFBIG = 27,
  ENOSPC = 28, ESPIPE = 29, EROFS = 30, EMLINK = 31, EPIPE = 32, ERANGE = 34, EDEADLK = 35,
  ENAMETOOLONG = 36, ENOSYS = 38, ENOTEMPTY = 39, ELOOP = 40, ENODATA = 61, EOVERFLOW = 75,
  ENOTSOCK = 88, EOPNOTSUPP = 95, ETIMEDOUT = 110,
};

// Syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl).
enum Sys : uint32_t {
  SYS_read = 0, SYS_write = 1, SYS_open = 2, SYS_close = 3, SYS_stat = 4, SYS_fstat = 5, SYS_lstat = 6,
  SYS_poll = 7, SYS_lseek = 8, SYS_mmap = 9, SYS_mprotect = 10, SYS_munmap = 11, SYS_brk = 12,
  SYS_rt_sigaction = 13, SYS_rt_sigprocmask = 14, SYS_rt_sigreturn = 15, SYS_ioctl = 16, SYS_pread64 = 17,
  SYS_pwrite64 = 18, SYS_readv = 19, SYS_writev = 20, SYS_access = 21, SYS_pipe = 22, SYS_select = 23,
  SYS_sched_yield = 24, SYS_mremap = 25, SYS_msync = 26, SYS_mincore = 27, SYS_madvise = 28, SYS_dup = 32,
  SYS_dup2 = 33, SYS_pause = 34, SYS_nanosleep = 35, SYS_getitimer = 36, SYS_alarm = 37,
  SYS_setitimer = 38, SYS_getpid = 39, SYS_sendfile = 40, SYS_exit = 60, SYS_wait4 = 61, SYS_kill = 62, SYS_uname = 63,
  SYS_fcntl = 72, SYS_flock = 73, SYS_fsync = 74, SYS_fdatasync = 75, SYS_truncate = 76, SYS_ftruncate = 77,
  SYS_rename = 82, SYS_mkdir = 83, SYS_rmdir = 84, SYS_creat = 85, SYS_unlink = 87, SYS_chmod = 90, SYS_fchmod = 91,
  SYS_mkdirat = 258, SYS_unlinkat = 263, SYS_renameat = 264, SYS_fchmodat = 268, SYS_utimensat = 280,
  SYS_renameat2 = 316,
  SYS_getdents = 78, SYS_getcwd = 79, SYS_chdir = 80, SYS_fchdir = 81, SYS_readlink = 89, SYS_umask = 95,
  SYS_gettimeofday = 96, SYS_getrlimit = 97, SYS_getrusage = 98, SYS_sysinfo = 99, SYS_times = 100,
  SYS_getuid = 102, SYS_getgid = 104, SYS_geteuid = 107, SYS_getegid = 108, SYS_setpgid = 109,
  SYS_getppid = 110, SYS_setuid = 105, SYS_setgid = 106, SYS_setresuid = 117, SYS_getresuid = 118, SYS_setresgid = 119, SYS_getresgid = 120, SYS_getpgrp = 111, SYS_setsid = 112, SYS_getgroups = 115, SYS_getpgid = 121,
  SYS_getsid = 124, SYS_getpriority = 140, SYS_setpriority = 141, SYS_sigaltstack = 131, SYS_statfs = 137, SYS_fstatfs = 138,
  SYS_sched_getparam = 143, SYS_sched_getscheduler = 145, SYS_mlock = 149, SYS_munlock = 150,
  SYS_prctl = 157, SYS_arch_prctl = 158, SYS_setrlimit = 160, SYS_gettid = 186, SYS_tkill = 200,
  SYS_time = 201, SYS_futex = 202, SYS_sched_setaffinity = 203, SYS_sched_getaffinity = 204,
  SYS_getdents64 = 217, SYS_set_tid_address = 218, SYS_fadvise64 = 221, SYS_clock_gettime = 228,
  SYS_clock_getres = 229, SYS_clock_nanosleep = 230, SYS_exit_group = 231, SYS_tgkill = 234,
  SYS_openat = 257, SYS_newfstatat = 262, SYS_readlinkat = 267, SYS_faccessat = 269, SYS_pselect6 = 270,
  SYS_ppoll = 271, SYS_set_robust_list = 273, SYS_get_robust_list = 274, SYS_dup3 = 292, SYS_pipe2 = 293,
  SYS_prlimit64 = 302, SYS_getcpu = 309, SYS_getrandom = 318, SYS_memfd_create = 319, SYS_membarrier = 324,
  SYS_statx = 332, SYS_rseq = 334, SYS_clone3 = 435, SYS_faccessat2 = 439,
};
inline constexpr uint32_t kSyscallMax = 512;

// open flags
inline constexpr uint32_t O_ACCMODE = 3, O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0100,
                          O_EXCL = 0200, O_NOCTTY = 0400, O_TRUNC = 01000, O_APPEND = 02000,
                          O_NONBLOCK = 04000, O_DIRECTORY = 0200000, O_NOFOLLOW = 0400000,
                          O_CLOEXEC = 02000000, O_PATH = 010000000, O_TMPFILE = 020200000;
inline constexpr int32_t AT_FDCWD = -100;
inline constexpr uint32_t AT_SYMLINK_NOFOLLOW = 0x100, AT_REMOVEDIR = 0x200, AT_EACCESS = 0x200, AT_EMPTY_PATH = 0x1000;
inline constexpr uint32_t RENAME_NOREPLACE = 1, RENAME_EXCHANGE = 2, RENAME_WHITEOUT = 4;

// st_mode
inline constexpr uint32_t S_IFMT = 0170000, S_IFDIR = 0040000, S_IFCHR = 0020000, S_IFREG = 0100000,
                          S_IFIFO = 0010000, S_IFLNK = 0120000;

struct Stat {  // struct stat, x86-64
  uint64_t st_dev;
  uint64_t st_ino;
  uint64_t st_nlink;
  uint32_t st_mode;
  uint32_t st_uid;
  uint32_t st_gid;
  uint32_t pad0;
  uint64_t st_rdev;
  int64_t st_size;
  int64_t st_blksize;
  int64_t st_blocks;
  uint64_t st_atime, st_atime_nsec;
  uint64_t st_mtime, st_mtime_nsec;
  uint64_t st_ctime, st_ctime_nsec;
  int64_t unused[3];
};
static_assert(sizeof(Stat) == 144);

struct Timespec {
  int64_t tv_sec;
  int64_t tv_nsec;
};
struct Timeval {
  int64_t tv_sec;
  int64_t tv_usec;
};
struct Iovec {
  uint64_t base;
  uint64_t len;
};
struct Utsname {
  char sysname[65], nodename[65], release[65], version[65], machine[65], domainname[65];
};
struct Rlimit {
  uint64_t cur, max;
};
inline constexpr uint64_t RLIM_INFINITY = ~0ull;
enum : uint32_t { RLIMIT_CPU = 0, RLIMIT_FSIZE, RLIMIT_DATA, RLIMIT_STACK, RLIMIT_CORE, RLIMIT_RSS, RLIMIT_NPROC,
                  RLIMIT_NOFILE, RLIMIT_MEMLOCK, RLIMIT_AS, RLIMIT_NLIMITS = 16 };
struct Sysinfo {
  int64_t uptime;
  uint64_t loads[3];
  uint64_t totalram, freeram, sharedram, bufferram, totalswap, freeswap;
  uint16_t procs, pad;
  uint32_t pad2;
  uint64_t totalhigh, freehigh;
  uint32_t mem_unit;
  char f[4];
};
static_assert(sizeof(Sysinfo) == 112);
struct Rusage {
  Timeval utime, stime;
  int64_t rest[14];
};
struct Tms {
  int64_t utime, stime, cutime, cstime;
};
struct Pollfd {
  int32_t fd;
  int16_t events;
  int16_t revents;
};
inline constexpr int16_t POLLIN = 1, POLLPRI = 2, POLLOUT = 4, POLLERR = 8, POLLHUP = 16, POLLNVAL = 32;
struct Dirent64Header {
  uint64_t d_ino;
  int64_t d_off;
  uint16_t d_reclen;
  uint8_t d_type;
};
inline constexpr uint8_t DT_DIR = 4, DT_REG = 8, DT_CHR = 2;
struct Winsize {
  uint16_t row, col, xpixel, ypixel;
};

// mmap
inline constexpr uint32_t PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;
inline constexpr uint32_t MAP_SHARED = 1, MAP_PRIVATE = 2, MAP_SHARED_VALIDATE = 3, MAP_TYPE = 0xf,
                          MAP_FIXED = 0x10, MAP_ANONYMOUS = 0x20, MAP_GROWSDOWN = 0x100,
                          MAP_NORESERVE = 0x4000, MAP_POPULATE = 0x8000, MAP_STACK = 0x20000,
                          MAP_FIXED_NOREPLACE = 0x100000;
inline constexpr uint32_t MREMAP_MAYMOVE = 1, MREMAP_FIXED = 2, MREMAP_DONTUNMAP = 4;
inline constexpr uint32_t MADV_DONTNEED = 4, MADV_REMOVE = 9;

// ioctl
inline constexpr uint32_t TCGETS = 0x5401, TIOCGWINSZ = 0x5413, FIONREAD = 0x541b, FIONBIO = 0x5421,
                          FIOCLEX = 0x5451, FIONCLEX = 0x5450;
// fcntl
inline constexpr uint32_t F_DUPFD = 0, F_GETFD = 1, F_SETFD = 2, F_GETFL = 3, F_SETFL = 4, F_GETLK = 5,
                          F_SETLK = 6, F_SETLKW = 7, F_DUPFD_CLOEXEC = 1030, F_GETPIPE_SZ = 1032;
inline constexpr uint32_t FD_CLOEXEC = 1;
// lseek
inline constexpr uint32_t SEEK_SET = 0, SEEK_CUR = 1, SEEK_END = 2, SEEK_DATA = 3, SEEK_HOLE = 4;
// arch_prctl
inline constexpr uint32_t ARCH_SET_GS = 0x1001, ARCH_SET_FS = 0x1002, ARCH_GET_FS = 0x1003,
                          ARCH_GET_GS = 0x1004, ARCH_GET_CPUID = 0x1011, ARCH_SET_CPUID = 0x1012;
// clocks
inline constexpr uint32_t CLOCK_REALTIME = 0, CLOCK_MONOTONIC = 1, CLOCK_PROCESS_CPUTIME_ID = 2,
                          CLOCK_THREAD_CPUTIME_ID = 3, CLOCK_MONOTONIC_RAW = 4, CLOCK_REALTIME_COARSE = 5,
                          CLOCK_MONOTONIC_COARSE = 6, CLOCK_BOOTTIME = 7, CLOCK_REALTIME_ALARM = 8,
                          CLOCK_BOOTTIME_ALARM = 9, CLOCK_TAI = 11;
inline constexpr uint32_t TIMER_ABSTIME = 1;
// futex
inline constexpr uint32_t FUTEX_WAIT = 0, FUTEX_WAKE = 1, FUTEX_REQUEUE = 3, FUTEX_CMP_REQUEUE = 4,
                          FUTEX_WAKE_OP = 5, FUTEX_WAIT_BITSET = 9, FUTEX_WAKE_BITSET = 10,
                          FUTEX_PRIVATE_FLAG = 128, FUTEX_CLOCK_REALTIME = 256;
// signals
inline constexpr uint32_t SIGHUP = 1, SIGINT = 2, SIGQUIT = 3, SIGILL = 4, SIGTRAP = 5, SIGABRT = 6,
                          SIGBUS = 7, SIGFPE = 8, SIGKILL = 9, SIGUSR1 = 10, SIGSEGV = 11, SIGUSR2 = 12,
                          SIGPIPE = 13, SIGALRM = 14, SIGTERM = 15, SIGCHLD = 17, SIGCONT = 18,
                          SIGSTOP = 19, SIGTSTP = 20, SIGTTIN = 21, SIGTTOU = 22, SIGURG = 23,
                          SIGWINCH = 28, NSIG = 64;
inline constexpr uint64_t SIG_DFL = 0, SIG_IGN = 1;
inline constexpr uint64_t SA_SIGINFO = 4, SA_ONSTACK = 0x08000000, SA_RESTART = 0x10000000,
                          SA_NODEFER = 0x40000000, SA_RESETHAND = 0x80000000, SA_RESTORER = 0x04000000;
inline constexpr uint32_t SIG_BLOCK = 0, SIG_UNBLOCK = 1, SIG_SETMASK = 2;
struct KernelSigaction {  // the kernel's struct sigaction (not libc's)
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};
struct StackT {
  uint64_t sp;
  int32_t flags;
  int32_t pad;
  uint64_t size;
};
inline constexpr int32_t SS_ONSTACK = 1, SS_DISABLE = 2;
inline constexpr int32_t SI_TKILL = -6, SI_USER = 0;

// getrandom
inline constexpr uint32_t GRND_NONBLOCK = 1, GRND_RANDOM = 2, GRND_INSECURE = 4;

}  // namespace ember::guest::lx

// ember-vmm's seccomp allow-lists (seccomp/seccomp_filters.h): the golden
// list of each thread's syscalls (a change here is a change of the VMM's
// attack surface: review it), that every entry says why, that the BPF
// compiled into ember-vmm is current, and that the filters really allow and
// kill what they should (in forked children, no KVM needed).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "seccomp/seccomp.h"
#include "seccomp/seccomp_compile.h"
#include "seccomp/seccomp_filters.h"

namespace ember::seccomp {
namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
  return s;
}

// The golden lists. Changing a filter means changing these lines, so that the
// review of the change sees the new attack surface.
const std::vector<std::string> kGoldenMain = {
    "accept4",    "brk",        "clone",      "close",     "close_range", "connect",   "epoll_ctl",
    "epoll_wait", "exit",       "exit_group", "fsync",     "futex",       "getpid",    "madvise",
    "mmap",       "mprotect",   "munmap",     "pidfd_open", "poll",       "pwrite64",  "read",
    "readv",      "recvfrom",   "renameat2",  "restart_syscall", "rt_sigprocmask", "sendmsg", "sendto",
    "shutdown",   "socket",     "tgkill",     "timerfd_settime", "unlinkat", "write",   "writev",
};
const std::vector<std::string> kGoldenVcpu = {
    "brk",  "exit",   "futex",  "getrandom", "ioctl",        "madvise",         "mmap",
    "mprotect", "munmap", "restart_syscall", "rt_sigprocmask", "rt_sigreturn", "write",
};

TEST(SeccompFilters, AllowedSyscallsMatchTheGoldenLists) {
  for (Thread t : kAllThreads) {
    const auto names = allowed_syscalls(t);
    // Printed so that the lists are in the test log, too.
    std::printf("seccomp %s thread (%zu syscalls): %s\n", thread_name(t), names.size(), join(names).c_str());
    for (const Rule& r : rules(t)) {
      std::string checks;
      for (const ArgCheck& c : r.checks) {
        char buf[80];
        std::snprintf(buf, sizeof buf, " arg%u&0x%llx==0x%llx", c.arg, static_cast<unsigned long long>(c.mask),
                      static_cast<unsigned long long>(c.value));
        checks += buf;
      }
      std::printf("  %-16s%-40s %s\n", r.syscall, checks.c_str(), r.why);
    }
    EXPECT_EQ(join(names), join(t == Thread::kMain ? kGoldenMain : kGoldenVcpu)) << thread_name(t);
  }
}

TEST(SeccompFilters, EveryRuleSaysWhy) {
  for (Thread t : kAllThreads)
    for (const Rule& r : rules(t)) {
      ASSERT_NE(r.why, nullptr) << r.syscall;
      EXPECT_GT(std::strlen(r.why), 10u) << thread_name(t) << " " << r.syscall;
      for (const ArgCheck& c : r.checks) EXPECT_LE(c.arg, 5u) << r.syscall;
    }
}

TEST(SeccompFilters, GeneratedBpfIsCurrent) {
  for (Thread t : kAllThreads) {
    auto fresh = compile_bpf(t);
    ASSERT_TRUE(fresh) << fresh.message();
    const auto built = bpf_program(t);
    ASSERT_EQ(built.size(), fresh->size()) << thread_name(t) << ": rebuild (ember-seccomp-gen)";
    EXPECT_EQ(std::memcmp(built.data(), fresh->data(), built.size() * sizeof(sock_filter)), 0) << thread_name(t);
    EXPECT_LT(built.size(), 256u) << "keep the filters short: they run on every syscall";
  }
}

// Runs `body` in a forked child after installing thread kind t's filter;
// returns the wait status. The child reports success with exit(0) (the raw
// syscall: exit_group is not allowed on a vCPU thread).
int run_filtered(Thread t, const std::function<void()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!install(t)) ::syscall(SYS_exit, 100);
    body();
    ::syscall(SYS_exit, 0);
  }
  int ws = 0;
  ::waitpid(pid, &ws, 0);
  return ws;
}

bool killed_by_sigsys(int ws) { return WIFSIGNALED(ws) && WTERMSIG(ws) == SIGSYS; }
bool exited_ok(int ws) { return WIFEXITED(ws) && WEXITSTATUS(ws) == 0; }

TEST(SeccompFilters, AllowedCallsPass) {
  int ws = run_filtered(Thread::kMain, [] {
    char c = 'x';
    if (::syscall(SYS_write, -1, &c, 1) != -1) ::syscall(SYS_exit, 102);  // allowed (EBADF)
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) ::syscall(SYS_exit, 103);
    if (::mprotect(p, 4096, PROT_READ) != 0) ::syscall(SYS_exit, 104);
    if (::madvise(p, 4096, MADV_DONTNEED) != 0) ::syscall(SYS_exit, 105);
    if (::munmap(p, 4096) != 0) ::syscall(SYS_exit, 106);
  });
  EXPECT_TRUE(exited_ok(ws)) << "status " << ws;

  ws = run_filtered(Thread::kVcpu, [] {
    // KVM_RUN on a non-KVM fd: allowed by the filter, refused by the kernel.
    if (::ioctl(-1, KVM_RUN, 0) != -1) ::syscall(SYS_exit, 107);
  });
  EXPECT_TRUE(exited_ok(ws)) << "status " << ws;
}

TEST(SeccompFilters, ForbiddenCallsKillTheProcess) {
  struct Case {
    Thread t;
    const char* what;
    std::function<void()> body;
  };
  const std::vector<Case> cases = {
      {Thread::kMain, "socket (network)", [] { ::socket(AF_INET, SOCK_STREAM, 0); }},
      {Thread::kMain, "openat", [] { ::open("/etc/hostname", O_RDONLY); }},
      {Thread::kMain, "pipe2", [] {
         int p[2];
         ::pipe2(p, 0);
       }},
      {Thread::kMain, "execve", [] { ::execl("/bin/true", "true", nullptr); }},
      {Thread::kMain, "ioctl", [] { ::ioctl(0, KVM_RUN, 0); }},
      {Thread::kMain, "mmap PROT_EXEC",
       [] { ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); }},
      {Thread::kMain, "mmap of a file", [] { ::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, 0, 0); }},
      {Thread::kMain, "mmap MAP_SHARED",
       [] { ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED | MAP_ANONYMOUS, -1, 0); }},
      {Thread::kMain, "mprotect PROT_EXEC", [] { ::syscall(SYS_mprotect, nullptr, 4096, PROT_READ | PROT_EXEC); }},
      {Thread::kMain, "madvise MADV_REMOVE", [] { ::syscall(SYS_madvise, nullptr, 4096, MADV_REMOVE); }},
      {Thread::kMain, "clone (a thread)",
       [] { ::syscall(SYS_clone, CLONE_VM | CLONE_THREAD | CLONE_SIGHAND, nullptr, nullptr, nullptr, 0); }},
      {Thread::kMain, "tgkill SIGKILL", [] { ::syscall(SYS_tgkill, 1, 1, SIGKILL); }},
      {Thread::kMain, "ptrace", [] { ::syscall(SYS_ptrace, 0, 0, 0, 0); }},
      {Thread::kVcpu, "ioctl KVM_SET_USER_MEMORY_REGION",
       [] { ::ioctl(-1, KVM_SET_USER_MEMORY_REGION, nullptr); }},
      {Thread::kVcpu, "ioctl KVM_CREATE_VCPU", [] { ::ioctl(-1, KVM_CREATE_VCPU, 0); }},
      {Thread::kVcpu, "ioctl TIOCSTI", [] { ::ioctl(0, TIOCSTI, "x"); }},
      {Thread::kVcpu, "read", [] {
         char c;
         ::syscall(SYS_read, -1, &c, 1);
       }},
      {Thread::kVcpu, "exit_group", [] { ::syscall(SYS_exit_group, 0); }},
      {Thread::kVcpu, "openat", [] { ::open("/etc/hostname", O_RDONLY); }},
  };
  for (const Case& c : cases) {
    const int ws = run_filtered(c.t, c.body);
    EXPECT_TRUE(killed_by_sigsys(ws)) << thread_name(c.t) << " thread: " << c.what << " was not killed (status "
                                      << ws << ")";
  }
}

}  // namespace
}  // namespace ember::seccomp

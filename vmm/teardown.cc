#include "vmm/teardown.h"

#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>

namespace ember {

namespace {

// The helper shares our address space and (without CLONE_SETTLS) our TLS
// pointer, so it must not touch errno or any libc state: raw syscalls only.
inline long raw_syscall3(long n, long a, long b, long c) {
  long ret;
  asm volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return ret;
}

int teardown_child(void* arg) {
  const long parent = reinterpret_cast<long>(arg);
  raw_syscall3(SYS_close_range, 0, 2, 0);  // stdio first: readers get EOF as soon as the parent exits
  // Wait for the parent to be gone: its exit must not be the one that drops
  // the last reference to the VM (then it would wait the 15 ms itself). A
  // pidfd turns readable once the process has exited, files released.
  const long pidfd = raw_syscall3(SYS_pidfd_open, parent, 0, 0);
  if (pidfd >= 0) {
    struct {
      int fd;
      short events, revents;
    } p = {static_cast<int>(pidfd), 1 /* POLLIN */, 0};
    while (raw_syscall3(SYS_poll, reinterpret_cast<long>(&p), 1, -1) == -4 /* EINTR */) {
    }
  }
  raw_syscall3(SYS_close_range, 3, ~0u, 0);  // the VM, vCPU, eventfds: the slow part
  raw_syscall3(SYS_exit, 0, 0, 0);
  return 0;
}

}  // namespace

bool detach_teardown() {
  constexpr size_t kStack = 64 * 1024;
  // Leaked on purpose: the helper runs on it after we are gone (the address
  // space lives on in the helper).
  void* stack = ::mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return false;
  // No exit signal: the helper is nobody's business once we exit (init or
  // the subreaper reaps it).
  void* parent = reinterpret_cast<void*>(static_cast<long>(::getpid()));
  const int pid = ::clone(teardown_child, static_cast<char*>(stack) + kStack, CLONE_VM, parent);
  if (pid < 0) {
    ::munmap(stack, kStack);
    return false;
  }
  return true;
}

}  // namespace ember

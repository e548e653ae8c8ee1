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
  SyscallHandler handler;
};

// A register as a handler's typed parameter, as Linux's C prototypes see
// it: an int (a fd, a flag word) is the low 32 bits, a 64-bit value is the
// register. A pointer stays a uint64_t address: user_ok() checks it and
// user_ptr() makes it one (static_cast refuses a pointer type here).
template <typename T>
T syscall_arg(uint64_t v) {
  return static_cast<T>(v);
}
inline SysResult call_typed(SysResult (*f)(), const SyscallArgs&) { return f(); }
template <class A>
SysResult call_typed(SysResult (*f)(A), const SyscallArgs& a) { return f(syscall_arg<A>(a.a[0])); }
template <class A, class B>
SysResult call_typed(SysResult (*f)(A, B), const SyscallArgs& a) {
  return f(syscall_arg<A>(a.a[0]), syscall_arg<B>(a.a[1]));
}
template <class A, class B, class C>
SysResult call_typed(SysResult (*f)(A, B, C), const SyscallArgs& a) {
  return f(syscall_arg<A>(a.a[0]), syscall_arg<B>(a.a[1]), syscall_arg<C>(a.a[2]));
}
template <class A, class B, class C, class D>
SysResult call_typed(SysResult (*f)(A, B, C, D), const SyscallArgs& a) {
  return f(syscall_arg<A>(a.a[0]), syscall_arg<B>(a.a[1]), syscall_arg<C>(a.a[2]), syscall_arg<D>(a.a[3]));
}
template <class A, class B, class C, class D, class E>
SysResult call_typed(SysResult (*f)(A, B, C, D, E), const SyscallArgs& a) {
  return f(syscall_arg<A>(a.a[0]), syscall_arg<B>(a.a[1]), syscall_arg<C>(a.a[2]), syscall_arg<D>(a.a[3]),
           syscall_arg<E>(a.a[4]));
}
template <class A, class B, class C, class D, class E, class F>
SysResult call_typed(SysResult (*f)(A, B, C, D, E, F), const SyscallArgs& a) {
  return f(syscall_arg<A>(a.a[0]), syscall_arg<B>(a.a[1]), syscall_arg<C>(a.a[2]), syscall_arg<D>(a.a[3]),
           syscall_arg<E>(a.a[4]), syscall_arg<F>(a.a[5]));
}

// A syscall written once, with Linux's parameters:
//   EMBER_SYSCALL_DEFINE(lseek, int fd, int64_t offset, uint32_t whence) { ... }
// defines sys_lseek (the table's entry, syscall_list.h), which converts the
// registers and calls the body. EMBER_SYSCALL(name) is the raw form, for
// the few that need the saved registers (a.frame) or pass them on.
#define EMBER_SYSCALL_DEFINE(name, ...)                                                         \
  static SysResult sys_##name##_typed(__VA_ARGS__);                                             \
  SysResult sys_##name(const SyscallArgs& a) { return call_typed(sys_##name##_typed, a); } \
  static SysResult sys_##name##_typed(__VA_ARGS__)
#define EMBER_SYSCALL(name) SysResult sys_##name([[maybe_unused]] const SyscallArgs& a)

// Every handler (syscall_list.h).
#define EMBER_SYSCALL_ENTRY(name, handler) SysResult sys_##handler(const SyscallArgs& a);
#include "guest-init/syscall_list.h"
#undef EMBER_SYSCALL_ENTRY

// The program's memory as a handler sees it: addresses it passed.
template <typename T>
T* user_ptr(uint64_t p) {
  return reinterpret_cast<T*>(p);
}
// Checks that [p, p + n) is a plausible program buffer (not NULL, no
// wrap-around). The VM is the isolation boundary; this turns obvious bad
// pointers into EFAULT instead of a fault in the runtime.
bool user_ok(uint64_t p, uint64_t n);

}  // namespace ember::guest

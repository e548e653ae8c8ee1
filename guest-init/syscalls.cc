// The syscall table (made of syscall_list.h) and the dispatcher.
#include "guest-init/syscalls.h"

#include "guest-init/stdio.h"
#include "guest-init/klib.h"
#include "guest-init/platform.h"
#include "guest-init/runtime.h"

namespace ember::guest {

using namespace lx;

void syscall_table_entry_is_bad();  // never defined: see make_table()

namespace {

constexpr SyscallDef kSyscalls[] = {
#define EMBER_SYSCALL_ENTRY(name, handler) {SYS_##name, sys_##handler},
#include "guest-init/syscall_list.h"
#undef EMBER_SYSCALL_ENTRY
};

struct Table {
  SyscallHandler handler[kSyscallMax];
};

// Dense lookup built at compile time from the list above: a duplicate or an
// out-of-range number calls this non-constexpr function, which fails the
// build.
constexpr Table make_table() {
  Table t{};
  for (const SyscallDef& d : kSyscalls) {
    if (d.nr >= kSyscallMax || t.handler[d.nr] != nullptr) syscall_table_entry_is_bad();
    t.handler[d.nr] = d.handler;
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

bool user_ok(uint64_t p, uint64_t n) {
  uint64_t end;
  return p >= kPage && !add_overflows(p, n, &end) && end <= (1ull << 47);
}

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

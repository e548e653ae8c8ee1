#include "seccomp/seccomp_compile.h"

#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "base/fd.h"

namespace ember::seccomp {

namespace {

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};

Error seccomp_error(const std::string& what, int rc) { return Error{what + ": " + std::strerror(-rc)}; }

}  // namespace

Result<std::vector<sock_filter>> compile_bpf(Thread t) {
  std::unique_ptr<void, CtxDeleter> ctx(seccomp_init(SCMP_ACT_KILL_PROCESS));
  if (!ctx) return Error{"seccomp_init failed"};
  int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc < 0) return seccomp_error("seccomp_attr_set(ACT_BADARCH)", rc);
  for (const Rule& rule : rules(t)) {
    const int nr = seccomp_syscall_resolve_name(rule.syscall);
    if (nr == __NR_SCMP_ERROR) return Error{std::string("unknown syscall '") + rule.syscall + "'"};
    std::vector<scmp_arg_cmp> cmps;
    for (const ArgCheck& c : rule.checks) {
      if (c.arg > 5) return Error{std::string(rule.syscall) + ": argument index " + std::to_string(c.arg)};
      if (c.mask == ~uint64_t{0})
        cmps.push_back(scmp_arg_cmp{c.arg, SCMP_CMP_EQ, c.value, 0});
      else
        cmps.push_back(scmp_arg_cmp{c.arg, SCMP_CMP_MASKED_EQ, c.mask, c.value});
    }
    rc = seccomp_rule_add_exact_array(ctx.get(), SCMP_ACT_ALLOW, nr, static_cast<unsigned>(cmps.size()),
                                      cmps.empty() ? nullptr : cmps.data());
    if (rc < 0) return seccomp_error(std::string("seccomp rule for ") + rule.syscall + " (" + thread_name(t) + ")", rc);
  }
  Fd mem(::memfd_create("ember-seccomp-bpf", MFD_CLOEXEC));
  if (!mem.valid()) return errno_error("memfd_create");
  rc = seccomp_export_bpf(ctx.get(), mem.get());
  if (rc < 0) return seccomp_error("seccomp_export_bpf", rc);
  const off_t size = ::lseek(mem.get(), 0, SEEK_END);
  if (size <= 0 || size % sizeof(sock_filter) != 0) return Error{"seccomp_export_bpf: odd program size"};
  std::vector<sock_filter> prog(static_cast<size_t>(size) / sizeof(sock_filter));
  if (::pread(mem.get(), prog.data(), static_cast<size_t>(size), 0) != size) return errno_error("read BPF");
  return prog;
}

std::string libseccomp_version() {
  const scmp_version* v = seccomp_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->micro);
}

}  // namespace ember::seccomp

#include "seccomp/seccomp.h"

#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace ember::seccomp {

Result<void> install(Thread t) {
  const std::span<const sock_filter> prog = bpf_program(t);
  sock_fprog fprog{};
  fprog.len = static_cast<unsigned short>(prog.size());
  fprog.filter = const_cast<sock_filter*>(prog.data());
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return errno_error("prctl(PR_SET_NO_NEW_PRIVS)");
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) < 0)
    return errno_error(std::string("seccomp: installing the ") + thread_name(t) + " thread's filter");
  return Ok();
}

}  // namespace ember::seccomp

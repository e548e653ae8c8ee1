#include "controller/system_limits.h"

#include <sys/resource.h>

#include <cstdio>
#include <fstream>

namespace ember::controller {

namespace {

uint64_t read_u64(const char* path) {
  std::ifstream f(path);
  uint64_t v = 0;
  f >> v;
  return v;
}

uint64_t mem_total() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (f >> key >> kib >> unit)
    if (key == "MemTotal:") return kib * 1024;
  return 0;
}

}  // namespace

LimitReport raise_and_check_limits(uint64_t max_vms) {
  LimitReport r;
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    if (rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &rl);
      ::getrlimit(RLIMIT_NOFILE, &rl);
    }
    r.nofile = rl.rlim_cur;
  }
  // emberd holds per VM: a pidfd, and 3 pipe ends (boot) or one socket (snapshot).
  const uint64_t want_fds = max_vms * 4 + 1024;
  if (r.nofile < want_fds)
    r.warnings.push_back("RLIMIT_NOFILE is " + std::to_string(r.nofile) + ", " + std::to_string(max_vms) +
                         " VMs need about " + std::to_string(want_fds) +
                         ": raise the hard limit (ulimit -Hn, LimitNOFILE= in a systemd unit, or /etc/security/limits.conf)");
  r.pid_max = read_u64("/proc/sys/kernel/pid_max");
  r.threads_max = read_u64("/proc/sys/kernel/threads-max");
  r.max_map_count = read_u64("/proc/sys/vm/max_map_count");
  r.mem_total_bytes = mem_total();
  // A VMM is a process with a vCPU thread (and a teardown helper at the end).
  const uint64_t want_tasks = max_vms * 3 + 4096;
  if (r.pid_max && r.pid_max < want_tasks)
    r.warnings.push_back("kernel.pid_max is " + std::to_string(r.pid_max) + ", " + std::to_string(max_vms) +
                         " VMs need about " + std::to_string(want_tasks) + " pids: sysctl -w kernel.pid_max=" +
                         std::to_string(std::max<uint64_t>(want_tasks, 4194304)));
  if (r.threads_max && r.threads_max < want_tasks)
    r.warnings.push_back("kernel.threads-max is " + std::to_string(r.threads_max) + ", " + std::to_string(max_vms) +
                         " VMs need about " + std::to_string(want_tasks) + " threads: sysctl -w kernel.threads-max=" +
                         std::to_string(want_tasks * 2));
  return r;
}

}  // namespace ember::controller

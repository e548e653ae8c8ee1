#include "controller/system_limits.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "jailer/cgroup_mounts.h"
#include "jailer/plain_text.h"

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

// Every task on the host: the fourth field of /proc/loadavg is
// "running/total", and total counts threads and kernel threads alike.
int64_t host_tasks() {
  const std::string t = jail::read_text("/proc/loadavg");
  const auto slash = t.find('/');
  return slash == std::string::npos ? 0 : std::strtoll(t.c_str() + slash + 1, nullptr, 10);
}

// pids.max and pids.current of emberd's cgroup and of each cgroup above it.
void add_cgroup_pid_limits(std::vector<TaskLimit>* out) {
  const std::string self = jail::read_text("/proc/self/cgroup");
  for (const jail::CgroupMount& m : jail::parse_cgroup_mounts(jail::read_text("/proc/self/mountinfo"))) {
    if (m.version == 1 && std::find(m.controllers.begin(), m.controllers.end(), "pids") == m.controllers.end()) continue;
    std::string rel = jail::own_cgroup(self, m.version, "pids");
    if (rel.empty()) continue;
    for (;;) {
      const std::string dir = m.path + (rel == "/" ? "" : rel);
      const std::string max = jail::read_text(dir + "/pids.max");
      if (!max.empty() && max.compare(0, 3, "max") != 0)
        out->push_back({"pids.max of " + dir, std::strtoll(max.c_str(), nullptr, 10),
                        std::strtoll(jail::read_text(dir + "/pids.current").c_str(), nullptr, 10)});
      if (rel == "/" || rel.empty()) break;
      const auto cut = rel.rfind('/');
      rel = cut == 0 || cut == std::string::npos ? "/" : rel.substr(0, cut);
    }
  }
}

}  // namespace

std::vector<TaskLimit> read_task_limits(bool nproc) {
  std::vector<TaskLimit> out;
  const int64_t tasks = host_tasks();
  if (const auto v = read_u64("/proc/sys/kernel/pid_max")) out.push_back({"kernel.pid_max", static_cast<int64_t>(v), tasks});
  if (const auto v = read_u64("/proc/sys/kernel/threads-max"))
    out.push_back({"kernel.threads-max", static_cast<int64_t>(v), tasks});
  add_cgroup_pid_limits(&out);
  struct rlimit rl;
  if (nproc && ::geteuid() != 0 && ::getrlimit(RLIMIT_NPROC, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    out.push_back({"RLIMIT_NPROC", static_cast<int64_t>(rl.rlim_cur), 0});
  return out;
}

int64_t tasks_for_vms(const std::vector<TaskLimit>& limits, int64_t ours, int64_t reserve, std::string* which) {
  int64_t best = INT64_MAX;
  for (const TaskLimit& l : limits) {
    const int64_t others = std::max<int64_t>(0, l.used - ours);
    const int64_t room = l.limit - others - std::min(reserve, l.limit / 4);
    if (room < best) {
      best = room;
      if (which) *which = l.name;
    }
  }
  return std::max<int64_t>(0, best);
}

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
  const uint64_t want_tasks = max_vms * kTasksPerVm + 4096;
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

// The process and kernel limits that thousands of VMs need: raise
// RLIMIT_NOFILE to its hard limit, and check kernel.pid_max,
// kernel.threads-max and vm.max_map_count, saying what to change; and the
// task limits that admission (admission.h) keeps every VM within.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ember::controller {

struct LimitReport {
  uint64_t nofile = 0;             // RLIMIT_NOFILE after raising
  uint64_t pid_max = 0, threads_max = 0, max_map_count = 0;
  uint64_t mem_total_bytes = 0;
  std::vector<std::string> warnings;  // one line each, with the command that fixes it
};

// The tasks a VM holds until its own are measured: its VMM's main and vCPU
// threads, KVM's worker thread for the VM, and one for either end of its life
// (the jailer that starts it, the helper that tears it down).
inline constexpr int64_t kTasksPerVm = 4;

// `max_vms`: the configured limit, to compare the kernel limits with (each VM
// is kTasksPerVm tasks and ~3 fds in emberd).
LimitReport raise_and_check_limits(uint64_t max_vms);

// One limit on the number of tasks (processes and threads) that emberd and
// its VMs fall under, and how many it counts now, ours included.
struct TaskLimit {
  std::string name;  // "kernel.pid_max", "pids.max of /sys/fs/cgroup/pids/x", "RLIMIT_NPROC"
  int64_t limit = 0;
  int64_t used = 0;  // RLIMIT_NPROC: 0 (it counts per uid; only our own tasks are held against it)
};
// kernel.pid_max and kernel.threads-max (against every task on the host),
// pids.max of emberd's cgroup and each above it, and, when `nproc`, a finite
// RLIMIT_NPROC (unjailed VMMs run as emberd's own uid).
std::vector<TaskLimit> read_task_limits(bool nproc);
// Tasks the VMs may hold in all: under each limit, what is not used by
// others (`ours` of its `used` are the VMs') less `reserve` for the host (at
// most a quarter of that limit); the tightest wins and is named in *which.
int64_t tasks_for_vms(const std::vector<TaskLimit>& limits, int64_t ours, int64_t reserve, std::string* which);

}  // namespace ember::controller

// The process and kernel limits that thousands of VMs need: raise
// RLIMIT_NOFILE to its hard limit, and check kernel.pid_max,
// kernel.threads-max and vm.max_map_count, saying what to change.
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

// `max_vms`: the configured limit, to compare the kernel limits with (each VM
// is a process with 2-3 threads and ~3 fds in emberd).
LimitReport raise_and_check_limits(uint64_t max_vms);

}  // namespace ember::controller

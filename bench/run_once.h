// One whole run of a command, for the benchmarks that time processes
// (ember-bench boot, touch): stdin and stdout on /dev/null, stderr captured
// when asked (the VMM writes its trace line there), timed from spawn to
// exit.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ember::bench {

struct RunOutcome {
  int status = -1;  // the exit status, or 128 + the signal
  double wall_us = 0;
  std::string trace;          // stderr, when captured
  uint64_t minor_faults = 0;  // the process's (for ember-vmm: KVM faulting guest RAM in)
};

// nullopt (and a line on stderr) if argv could not be started.
std::optional<RunOutcome> run_once(const std::vector<std::string>& argv, bool capture_stderr);

}  // namespace ember::bench

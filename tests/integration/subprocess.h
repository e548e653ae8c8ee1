// Runs a command with the given stdin, collects stdout/stderr and the exit
// status, with a deadline. Used by the integration tests to drive the real
// binaries exactly as a user would.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace ember::testing {

struct ProcessResult {
  int status = -1;         // exit status, or 128 + signal as a shell reports it
  bool timed_out = false;  // killed by the deadline
  std::string out;
  std::string err;
};

ProcessResult run_process(const std::vector<std::string>& argv, const std::string& input = {},
                          std::chrono::milliseconds deadline = std::chrono::seconds(60));

// Whether KVM is usable here; the reason when it is not (for GTEST_SKIP).
bool kvm_available(std::string* why);

}  // namespace ember::testing

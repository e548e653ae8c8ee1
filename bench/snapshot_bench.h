// `ember-bench restore` and `ember-bench reset`: the snapshot path.
//
//   restore: restore-to-ready of a snapshot taken at the ready point, in a
//     new ember-vmm process (spawn to the vCPU entering the guest) and in
//     this process (RestoredMachine::restore to the same moment); snapshot size.
//   reset: reset-to-ready in place (RestoredMachine::reset to the vCPU entering
//     the guest again), a whole run+reset cycle over the console, and the
//     end-to-end latency of an echo invocation over vsock (connect, stdin,
//     stdout, exit status) on a VM reset in place between invocations.
#pragma once

#include <string>
#include <vector>

namespace ember::bench {

int restore_bench(const std::vector<std::string>& args);
int reset_bench(const std::vector<std::string>& args);

}  // namespace ember::bench

// ember-jailer's work: build a jail, run ember-vmm in it, supervise it; and
// --cleanup. See `ember-jailer --help` for the steps and DESIGN.md ("The
// jailer") for the decisions.
#pragma once

#include <cstdint>

#include "jailer/jailer_cli.h"

namespace ember::jail {

inline constexpr int kExitUsage = 2;
inline constexpr int kExitJailFailed = 125;

// Runs the whole jail (steps 1-8) and returns what ember-jailer exits with:
// the VMM's status (128+N if it was killed by signal N; 0 once it runs with
// --daemonize or --detach), or kExitJailFailed after printing one line
// naming the step and the path (nothing of the jail is left then). Never
// returns in the child that becomes ember-vmm.
// t0_ns: CLOCK_MONOTONIC at main() (for EMBER_JAILER_TRACE=1); 0: now.
int run_jail(const JailerOptions& o, uint64_t t0_ns = 0);

// --cleanup: kills what still runs in the jail's cgroups, removes them and
// the jail directory. Returns the exit status.
int run_cleanup(const JailerOptions& o);

}  // namespace ember::jail

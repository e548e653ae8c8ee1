// Installing ember-vmm's seccomp filters. The BPF programs are compiled from
// the tables in seccomp_filters.h when Ember is built (ember-seccomp-gen), so
// installing one is a single seccomp(2) call (~10 us), not a libseccomp
// compilation (~150 us).
#pragma once

#include <linux/filter.h>

#include <span>

#include "base/result.h"
#include "seccomp/seccomp_filters.h"

namespace ember::seccomp {

// The compiled program for a thread kind (generated: seccomp_bpf.cc).
std::span<const sock_filter> bpf_program(Thread t);

// Sets no_new_privs and installs the thread kind's filter on the CALLING
// THREAD only (no TSYNC): every thread installs its own, after its set-up.
// Threads it creates afterwards inherit it.
Result<void> install(Thread t);

}  // namespace ember::seccomp

// Compiles the allow-lists of seccomp_filters.h to classic BPF with
// libseccomp (x86-64; wrong architecture or anything not allowed:
// SECCOMP_RET_KILL_PROCESS). Used at build time by ember-seccomp-gen and by
// the tests that check the generated programs are current; ember-vmm never
// links libseccomp.
#pragma once

#include <linux/filter.h>

#include <string>
#include <vector>

#include "base/result.h"
#include "seccomp/seccomp_filters.h"

namespace ember::seccomp {

Result<std::vector<sock_filter>> compile_bpf(Thread t);

// "2.5.4": the libseccomp the BPF came from.
std::string libseccomp_version();

}  // namespace ember::seccomp

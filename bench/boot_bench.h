// `ember-bench boot`: how long a whole `ember-vmm run` of a static program
// takes, side by side with fork+exec of the same binary (and gVisor's
// `runsc do` where installed), interleaved so that machine noise hits all
// alike.
#pragma once

#include <string>
#include <vector>

namespace ember::bench {

int boot_bench(const std::vector<std::string>& args);

}  // namespace ember::bench

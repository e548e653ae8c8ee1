// `ember-bench touch`: the first touch of fresh memory, a program that
// mallocs and writes N MiB (touch_memory) run natively and in `ember-vmm
// run` with and without --huge-pages, interleaved; whole-process times and
// the ratios to native, and the VMM's page faults (counts mean something
// even under emulation, times only on /dev/kvm).
#pragma once

#include <string>
#include <vector>

namespace ember::bench {

int touch_bench(const std::vector<std::string>& args);

}  // namespace ember::bench

// `ember-bench invoke`: emberd end to end over HTTP, as its users see it:
// invocation latency with a warm pool and with an empty one (restore on the
// spot), throughput with many clients, and density (pools filled to
// thousands of parked VMs: host memory per VM, time to fill, invoking across
// all of them).
#pragma once

#include <string>
#include <vector>

namespace ember::bench {

int emberd_bench(const std::vector<std::string>& args);

}  // namespace ember::bench

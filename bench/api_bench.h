// `ember-bench api`: the VMM API's costs. VMM process start to API socket
// ready (and to the first answer), API request latency over a keep-alive
// libcurl connection (pre-boot PUTs, GETs, pause/resume of a live guest),
// and the private memory of idle VMMs with a booted guest (from
// /proc/PID/smaps_rollup and /proc/PID/smaps).
#pragma once

#include <string>
#include <vector>

namespace ember::bench {

int api_bench(const std::vector<std::string>& args);

}  // namespace ember::bench

// Percentiles and machine description for benchmark reports.
#pragma once

#include <string>
#include <vector>

namespace ember::bench {

struct Summary {
  size_t n = 0;
  double min = 0, p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;
};

// Nearest-rank percentiles over a copy of the samples.
Summary summarize(std::vector<double> samples);

// One JSON object describing where the figures were taken: host name,
// kernel, CPU model, core count, whether /dev/kvm is nested PVM.
std::string machine_json();

}  // namespace ember::bench

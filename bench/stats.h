// Percentiles and machine description for benchmark reports.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ember::bench {

struct Summary {
  size_t n = 0;
  double min = 0, p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;
};

// Nearest-rank percentiles over a copy of the samples.
Summary summarize(std::vector<double> samples);

// {"n", "min", "p50", "p90", "p99", "max", "mean"}: how every report writes a Summary.
nlohmann::json summary_json(const Summary& s);

// The readable table: a title line with the column names, then one row per
// series (summarized, printed, and stored as out[key]).
void print_header(const char* title);
void print_row(const char* what, const std::vector<double>& samples, nlohmann::json& out, const char* key);

// One JSON object describing where the figures were taken: host name,
// kernel, CPU model, core count, whether /dev/kvm is nested PVM.
std::string machine_json();

}  // namespace ember::bench

#include "bench/stats.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "base/percentile.h"

namespace ember::bench {

nlohmann::json summary_json(const Summary& s) {
  return nlohmann::json{{"n", s.n},     {"min", s.min}, {"p50", s.p50}, {"p90", s.p90},
                        {"p99", s.p99}, {"max", s.max}, {"mean", s.mean}};
}

void print_header(const char* title) {
  std::printf("%-48s %6s %9s %9s %9s %9s\n", title, "n", "min", "p50", "p99", "max");
}

void print_row(const char* what, const std::vector<double>& samples, nlohmann::json& out, const char* key) {
  const Summary s = summarize(samples);
  std::printf("%-48s %6zu %9.1f %9.1f %9.1f %9.1f\n", what, s.n, s.min, s.p50, s.p99, s.max);
  out[key] = summary_json(s);
}

Summary summarize(std::vector<double> v) {
  Summary s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.n = v.size();
  s.min = v.front();
  s.max = v.back();
  s.p50 = nearest_rank(v, 0.50);
  s.p90 = nearest_rank(v, 0.90);
  s.p99 = nearest_rank(v, 0.99);
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
  return s;
}

std::string machine_json() {
  nlohmann::json m;
  utsname u{};
  uname(&u);
  m["hostname"] = u.nodename;
  m["kernel"] = std::string(u.sysname) + " " + u.release;
  m["cpus"] = sysconf(_SC_NPROCESSORS_ONLN);
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      m["cpu"] = line.substr(line.find(':') + 2);
      break;
    }
  }
  m["kvm"] = std::filesystem::exists("/dev/kvm");
  m["kvm_pvm"] = std::filesystem::exists("/sys/module/kvm_pvm");
  return m.dump();
}

}  // namespace ember::bench

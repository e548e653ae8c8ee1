#include "bench/proc_memory.h"

#include <fstream>

namespace ember::bench {

namespace {

// Lines "Key:   N kB"; others (counts without a unit) are skipped.
std::map<std::string, double> kib_fields(const std::string& path) {
  std::map<std::string, double> kib;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) {
    const auto colon = line.find(':');
    if (colon == std::string::npos || line.find(" kB") == std::string::npos) continue;
    kib[line.substr(0, colon)] = std::stod(line.substr(colon + 1));
  }
  return kib;
}

}  // namespace

std::map<std::string, double> smaps_rollup_kib(pid_t pid) {
  return kib_fields("/proc/" + std::to_string(pid) + "/smaps_rollup");
}

std::map<std::string, double> meminfo_kib() { return kib_fields("/proc/meminfo"); }

}  // namespace ember::bench

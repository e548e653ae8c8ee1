#include "bench/proc_memory.h"

#include <fstream>

namespace ember::bench {

std::map<std::string, double> smaps_rollup_kib(pid_t pid) {
  std::map<std::string, double> kib;
  std::ifstream roll("/proc/" + std::to_string(pid) + "/smaps_rollup");
  for (std::string line; std::getline(roll, line);) {
    const auto colon = line.find(':');
    if (colon == std::string::npos || line.find(" kB") == std::string::npos) continue;
    kib[line.substr(0, colon)] = std::stod(line.substr(colon + 1));
  }
  return kib;
}

}  // namespace ember::bench

#include "bench/touch_bench.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "base/self_path.h"
#include "bench/run_once.h"
#include "bench/stats.h"

namespace ember::bench {

int touch_bench(const std::vector<std::string>& args) {
  int runs = 10;
  int mib = 100;
  std::string json_path;
  const std::string dir = self_dir();
  std::string program = dir + "/../guest-programs/touch_memory-glibc";
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string { return i + 1 < args.size() ? args[++i] : ""; };
    if (a == "-n") runs = std::atoi(value().c_str());
    else if (a == "--mib") mib = std::atoi(value().c_str());
    else if (a == "--program") program = value();
    else if (a == "--json") json_path = value();
    else if (a == "-h" || a == "--help") {
      std::printf(
          "usage: ember-bench touch [-n RUNS] [--mib N] [--program TOUCH_MEMORY] [--json FILE]\n\n"
          "The first touch of fresh memory: TOUCH_MEMORY (default touch_memory-glibc from\n"
          "the build's guest-programs/) mallocs and writes N MiB (default 100), run\n"
          "interleaved, RUNS times each (default 10):\n"
          "  native            the program itself (the floor)\n"
          "  ember-vmm         ember-vmm run --mem-mib 2N+64 PROGRAM N\n"
          "  ember-vmm huge    the same with --huge-pages (guest RAM MADV_HUGEPAGE)\n"
          "Whole-process times (µs; the VMs include their boot), ratios to native, and\n"
          "each process's minor page faults (ember-vmm's are KVM faulting guest RAM in:\n"
          "a count that means something under emulation too).\n");
      return 0;
    } else {
      std::fprintf(stderr, "ember-bench touch: unknown argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (runs < 1 || mib < 1 || mib > 1024) {
    std::fprintf(stderr, "ember-bench touch: -n must be at least 1 and --mib 1..1024\n");
    return 2;
  }
  const std::string vmm = dir + "/ember-vmm", n = std::to_string(mib), mem = std::to_string(2 * mib + 64);
  struct Contender {
    const char* name;
    std::vector<std::string> argv;
    std::vector<double> wall, faults;
  } contenders[] = {
      {"native", {program, n}, {}, {}},
      {"ember-vmm", {vmm, "run", "--mem-mib", mem, program, "--", n}, {}, {}},
      {"ember-vmm huge", {vmm, "run", "--mem-mib", mem, "--huge-pages", program, "--", n}, {}, {}},
  };
  for (int i = 0; i < runs; i++) {
    for (auto& c : contenders) {
      const auto r = run_once(c.argv, false);
      if (!r || r->status != 0) {
        std::fprintf(stderr, "ember-bench touch: %s failed\n", c.name);
        return 1;
      }
      c.wall.push_back(r->wall_us);
      c.faults.push_back(static_cast<double>(r->minor_faults));
    }
  }
  nlohmann::json report = {{"benchmark", "touch"}, {"mib", mib}, {"runs", runs}};
  report["machine"] = nlohmann::json::parse(machine_json());
  print_header(("touch " + n + " MiB, whole process (µs)").c_str());
  for (auto& c : contenders) print_row(c.name, c.wall, report["wall_us"], c.name);
  print_header("minor page faults per process");
  for (auto& c : contenders) print_row(c.name, c.faults, report["minor_faults"], c.name);
  const double native = summarize(contenders[0].wall).p50;
  for (size_t i = 1; i < std::size(contenders); i++) {
    const double ratio = native > 0 ? summarize(contenders[i].wall).p50 / native : 0;
    report["ratio_p50_vs_native"][contenders[i].name] = ratio;
    std::printf("%-48s %.2fx native (p50)\n", contenders[i].name, ratio);
  }
  if (!json_path.empty()) std::ofstream(json_path) << report.dump(2) << "\n";
  return 0;
}

}  // namespace ember::bench

#include "bench/touch_bench.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "base/self_path.h"
#include "bench/stats.h"

extern char** environ;

namespace ember::bench {
namespace {

struct Run {
  bool ok = false;
  double wall_us = 0;
  double minor_faults = 0;  // the process's (for ember-vmm: KVM faulting guest RAM in)
};

// argv with stdin from /dev/null, stdout and stderr to /dev/null; wall time
// and page faults from wait4.
Run run(const std::vector<std::string>& argv) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  Run r;
  pid_t pid;
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return r;
  int ws = 0;
  rusage ru{};
  if (::wait4(pid, &ws, 0, &ru) != pid) return r;
  r.wall_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  r.minor_faults = static_cast<double>(ru.ru_minflt);
  r.ok = WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
  return r;
}

}  // namespace

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
      const Run r = run(c.argv);
      if (!r.ok) {
        std::fprintf(stderr, "ember-bench touch: %s failed\n", c.name);
        return 1;
      }
      c.wall.push_back(r.wall_us);
      c.faults.push_back(r.minor_faults);
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

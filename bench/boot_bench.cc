#include "bench/boot_bench.h"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "base/self_path.h"
#include "bench/run_once.h"
#include "bench/stats.h"
#include "jailer/jail_record.h"


namespace ember::bench {
namespace {


struct Contender {
  std::string name;
  std::vector<std::string> argv;
  std::vector<double> wall_us;
  // From the VMM's EMBER_TRACE line: named phases in µs since process start.
  std::map<std::string, std::vector<double>> phases;
  bool jailed = false;
  bool detached = false;            // ember-jailer --detach: the VMM is our child, its status ours to collect
  std::vector<double> overhead_us;  // jailed: this run minus the same round's unjailed one
};

// "ember-trace: key=value key=value ..." → numeric phases.
void parse_trace(const std::string& text, std::map<std::string, std::vector<double>>& phases) {
  auto at = text.find("ember-trace:");
  if (at == std::string::npos) return;
  std::istringstream line(text.substr(at + 12, text.find('\n', at) - at - 12));
  for (std::string kv; line >> kv;) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    try {
      phases[kv.substr(0, eq)].push_back(std::stod(kv.substr(eq + 1)));
    } catch (...) {
    }
  }
}


std::optional<std::string> find_on_path(const std::string& name) {
  const char* path = getenv("PATH");
  std::istringstream dirs(path ? path : "");
  for (std::string d; std::getline(dirs, d, ':');) {
    auto p = std::filesystem::path(d) / name;
    if (access(p.c_str(), X_OK) == 0) return p.string();
  }
  return std::nullopt;
}

void usage() {
  printf(
      "usage: ember-bench boot [-n RUNS] [--program STATIC_ELF] [--json FILE] [--vmm PATH]\n"
      "                        [--jailed [--jailer PATH]... [--jail-arg ARG]...]\n"
      "\n"
      "Times whole-process runs of STATIC_ELF, interleaved run by run:\n"
      "  ember-vmm     ember-vmm run STATIC_ELF (a fresh microVM each time)\n"
      "  fork+exec     the same binary run natively (the floor)\n"
      "  runsc         runsc do STATIC_ELF, when gVisor's runsc is on PATH\n"
      "  ember-jailer  with --jailed: ember-jailer ... -- run STATIC_ELF (a fresh\n"
      "                jail each time: directory, cgroups, namespaces, uid drop;\n"
      "                its --cleanup runs after each run, timed apart), and the\n"
      "                same with --detach (emberd's way: the jailer exits once the\n"
      "                VMM runs; timed to the VMM's exit)\n"
      "and, from the VMM's EMBER_TRACE=1 line, when each VM reached its first\n"
      "KVM_RUN, the program's first instruction, and exit, plus exits per boot.\n"
      "Prints a table and one JSON object (also to FILE with --json).\n"
      "\n"
      "  -n RUNS        runs per contender (default 200)\n"
      "  --program P    default: hello-musl from the build's guest-programs/\n"
      "  --jailed       add the jailed contenders (needs root); the jail overhead is\n"
      "                reported as the median of per-round differences. Each run\n"
      "                then starts once the previous VM's detached teardown\n"
      "                (~15 ms, vmm/teardown.h) has finished, so that no contender\n"
      "                runs beside another's teardown\n"
      "  --jail-arg A   pass A to ember-jailer (repeatable), e.g.\n"
      "                --jail-arg --cgroup --jail-arg memory.limit_in_bytes=256M\n"
      "  --jailer PATH  the ember-jailer to time (default: next to ember-bench);\n"
      "                repeat it to compare jailers in the same rounds\n"
      "  --vmm PATH     the VMM to run and to jail (default: ember-vmm next to\n"
      "                ember-bench). A no-op static program named ember-vmm, with\n"
      "                ember-guest.elf beside it, times the jailer alone: the\n"
      "                jailer only checks that /dev/kvm is a character device\n"
      "\n"
      "example: ember-bench boot -n 200\n"
      "         ember-bench boot -n 200 --jailed\n"
      "         ember-bench boot -n 300 --jailed --vmm /tmp/standin/ember-vmm \\\n"
      "             --jailer /tmp/old/ember-jailer --jailer build/bin/ember-jailer\n");
}

}  // namespace

int boot_bench(const std::vector<std::string>& args) {
  int runs = 200;
  std::string program = self_dir() + "/../guest-programs/hello-musl";
  std::string json_path;
  bool jailed = false;
  std::vector<std::string> jail_args, jailers;
  std::string vmm = self_dir() + "/ember-vmm";
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) {
        fprintf(stderr, "ember-bench boot: %s needs a value\n", a.c_str());
        exit(2);
      }
      return args[++i];
    };
    if (a == "-n") {
      runs = std::atoi(value().c_str());
    } else if (a == "--program") {
      program = value();
    } else if (a == "--json") {
      json_path = value();
    } else if (a == "--jailed") {
      jailed = true;
    } else if (a == "--jail-arg") {
      jail_args.push_back(value());
    } else if (a == "--jailer") {
      jailers.push_back(value());
    } else if (a == "--vmm") {
      vmm = value();
    } else if (a == "-h" || a == "--help") {
      usage();
      return 0;
    } else {
      fprintf(stderr, "ember-bench boot: unknown argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (runs < 1) {
    fprintf(stderr, "ember-bench boot: -n must be at least 1\n");
    return 2;
  }
  if (access(program.c_str(), R_OK) != 0) {
    fprintf(stderr, "ember-bench boot: program %s: %s\n", program.c_str(), strerror(errno));
    return 1;
  }
  program = std::filesystem::canonical(program).string();
  if (access(vmm.c_str(), X_OK) != 0) {
    fprintf(stderr, "ember-bench boot: --vmm %s: %s\n", vmm.c_str(), strerror(errno));
    return 1;
  }
  vmm = std::filesystem::absolute(vmm).string();
  if (jailers.empty()) jailers.push_back(self_dir() + "/ember-jailer");

  std::vector<Contender> contenders;
  contenders.push_back({"ember-vmm", {vmm, "run", program}});
  contenders.push_back({"fork+exec", {program}});
  if (auto runsc = find_on_path("runsc")) contenders.push_back({"runsc", {*runsc, "do", program}});

  // The jailed contender: a new jail per run ("{ID}" below), removed with
  // --cleanup after the run, outside the timed part (timed on its own).
  std::string jail_base;
  Contender cleanup{"ember-jailer --cleanup", {}};
  if (jailed) {
    if (geteuid() != 0) {
      fprintf(stderr, "ember-bench boot: --jailed needs root (ember-jailer creates namespaces and cgroups)\n");
      return 2;
    }
    const char* tmp = getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/ember-bench-jails-XXXXXX";
    if (!mkdtemp(templ.data())) {
      fprintf(stderr, "ember-bench boot: mkdtemp %s: %s\n", templ.c_str(), strerror(errno));
      return 1;
    }
    jail_base = templ;
    // The VMMs' teardown helpers become our children, so that we can wait
    // for them between runs.
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    // Each jailer twice: supervising the VMM (its default), and --detach
    // (what emberd uses: the jailer exits once the VMM runs).
    for (const std::string& jailer : jailers)
      for (const bool detach : {false, true}) {
        std::vector<std::string> argv = {jailer, "--id", "{ID}", "--exec-file", vmm, "--uid", "10099", "--gid", "10099",
                                         "--chroot-base", jail_base};
        argv.insert(argv.end(), jail_args.begin(), jail_args.end());
        if (detach) argv.push_back("--detach");
        argv.insert(argv.end(), {"--", "run", program});
        const std::string how = detach ? " --detach" : "";
        contenders.push_back({jailers.size() == 1 ? "ember-jailer" + how + " + ember-vmm" : "jailer " + jailer + how, argv});
        contenders.back().jailed = true;
        contenders.back().detached = detach;
      }
  }

  setenv("EMBER_TRACE", "1", 1);
  int failures = 0;
  for (int i = 0; i < runs; i++) {
    double vmm_us = -1;
    for (auto& c : contenders) {
      const bool is_vmm = c.name == "ember-vmm";
      const bool is_jail = c.jailed;
      std::vector<std::string> argv = c.argv;
      const std::string id = "bench-" + std::to_string(getpid()) + "-" + std::to_string(i) + "-" +
                             std::to_string(&c - contenders.data());
      for (auto& a : argv)
        if (a == "{ID}") a = id;
      if (jailed)  // quiesce: reap every finished or finishing teardown helper first (untimed)
        while (waitpid(-1, nullptr, __WALL) > 0) {
        }
      auto r = run_once(argv, is_vmm || is_jail);
      // Detached, run_once timed the run to the VMM's exit (stderr's EOF)
      // but collected the jailer's status: the VMM's is ours (it is our
      // child), named in the jail.
      if (c.detached && r && r->status == 0) {
        std::ifstream pid_file(jail_base + "/ember-vmm/" + id + "/" + ember::jail::kJailPidFile);
        pid_t vmm_pid = -1;
        int ws = 0;
        if (!(pid_file >> vmm_pid) || waitpid(vmm_pid, &ws, 0) != vmm_pid) r->status = -1;
        else r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
      }
      if (is_jail) {
        auto cr = run_once({argv[0], "--cleanup", "--id", id, "--chroot-base", jail_base}, true);
        if (cr && cr->status == 0) cleanup.wall_us.push_back(cr->wall_us);
        if (r && r->status == 0 && vmm_us >= 0) c.overhead_us.push_back(r->wall_us - vmm_us);
      }
      if (is_vmm && r && r->status == 0) vmm_us = r->wall_us;
      if (!r || r->status != 0) {
        if (++failures <= 3)
          fprintf(stderr, "ember-bench: %s run %d failed (status %d)%s%s\n", c.name.c_str(), i, r ? r->status : -1,
                  r && !r->trace.empty() ? ": " : "", r ? r->trace.c_str() : "");
        continue;
      }
      c.wall_us.push_back(r->wall_us);
      if (is_vmm) parse_trace(r->trace, c.phases);
    }
  }

  nlohmann::json report;
  report["benchmark"] = "boot";
  report["program"] = program;
  report["runs"] = runs;
  report["failures"] = failures;
  report["machine"] = nlohmann::json::parse(machine_json());
  printf("%-34s %8s %10s %10s %10s %10s\n", "boot (whole process, µs)", "n", "min", "p50", "p99", "max");
  const double floor_p50 = summarize(contenders[1].wall_us).p50;
  for (auto& c : contenders) {
    Summary s = summarize(c.wall_us);
    printf("%-34s %8zu %10.0f %10.0f %10.0f %10.0f\n", c.name.c_str(), s.n, s.min, s.p50, s.p99, s.max);
    report["wall_us"][c.name] = summary_json(s);
    if (floor_p50 > 0) report["ratio_p50_vs_fork_exec"][c.name] = s.p50 / floor_p50;
    for (auto& [phase, values] : c.phases) {
      Summary ps = summarize(values);
      printf("  %-32s %8zu %10.1f %10.1f %10.1f %10.1f\n", phase.c_str(), ps.n, ps.min, ps.p50, ps.p99, ps.max);
      report["vmm_trace"][phase] = summary_json(ps);
    }
  }
  if (jailed) {
    Summary s = summarize(cleanup.wall_us);
    printf("%-34s %8zu %10.0f %10.0f %10.0f %10.0f   (after each jailed run, not in its time)\n",
           cleanup.name.c_str(), s.n, s.min, s.p50, s.p99, s.max);
    report["wall_us"][cleanup.name] = summary_json(s);
    for (const Contender& c : contenders) {
      if (!c.jailed) continue;
      Summary d = summarize(c.overhead_us);
      const std::string how = c.detached ? ", --detach" : "";
      const std::string name = jailers.size() == 1 ? "jail overhead" + how : "overhead, " + c.argv[0] + how;
      printf("%-34s %8zu %10.0f %10.0f %10.0f %10.0f   (jailed - ember-vmm, same round)\n", name.c_str(), d.n, d.min,
             d.p50, d.p99, d.max);
      const char* key = c.detached ? "jail_overhead_detached_us" : "jail_overhead_us";
      if (jailers.size() == 1) report[key] = summary_json(d);
      else report[key][c.argv[0]] = summary_json(d);
    }
    report["jail_args"] = jail_args;
    report["vmm"] = vmm;
    std::filesystem::remove_all(jail_base);
  }
  const std::string json = report.dump();
  printf("%s\n", json.c_str());
  if (!json_path.empty()) {
    FILE* f = fopen(json_path.c_str(), "w");
    if (!f) {
      fprintf(stderr, "ember-bench: %s: %s\n", json_path.c_str(), strerror(errno));
      return 1;
    }
    fprintf(f, "%s\n", json.c_str());
    fclose(f);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace ember::bench

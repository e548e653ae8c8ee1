#include "bench/snapshot_bench.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/self_path.h"
#include "bench/stats.h"
#include "vmm/machine.h"
#include "api/stdio_client.h"

extern char** environ;

namespace ember::bench {
namespace {

double now_us() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}


struct Options {
  int runs = 1000;
  std::string program;
  std::string json_path;
};

// -n N, --program P, --json FILE; false: exit with the returned status.
std::optional<int> parse(const char* name, const std::vector<std::string>& args, Options* o,
                         const char* usage) {
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& a = args[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      return args[++i];
    };
    std::optional<std::string> v;
    if (a == "-h" || a == "--help") {
      std::fputs(usage, stdout);
      return 0;
    } else if (a == "-n" && (v = value())) {
      o->runs = std::atoi(v->c_str());
    } else if (a == "--program" && (v = value())) {
      o->program = *v;
    } else if (a == "--json" && (v = value())) {
      o->json_path = *v;
    } else {
      std::fprintf(stderr, "ember-bench %s: bad argument '%s' (see --help)\n", name, a.c_str());
      return 2;
    }
  }
  if (o->runs < 1) {
    std::fprintf(stderr, "ember-bench %s: -n must be at least 1\n", name);
    return 2;
  }
  return std::nullopt;
}

struct Spawned {
  int status = -1;
  std::string err;
  double spawn_us = 0, end_us = 0;
};

// Runs argv with stdin /dev/null, stdout /dev/null, stderr captured.
Spawned spawn_wait(const std::vector<std::string>& argv) {
  Spawned s;
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return s;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  s.spawn_us = now_us();
  const int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(err_pipe[1]);
  if (rc != 0) {
    close(err_pipe[0]);
    return s;
  }
  char buf[4096];
  for (ssize_t n; (n = read(err_pipe[0], buf, sizeof buf)) > 0;) s.err.append(buf, static_cast<size_t>(n));
  close(err_pipe[0]);
  int ws = 0;
  waitpid(pid, &ws, 0);
  s.end_us = now_us();
  s.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  return s;
}

std::map<std::string, double> parse_trace(const std::string& text) {
  std::map<std::string, double> kv;
  const auto at = text.find("ember-trace:");
  if (at == std::string::npos) return kv;
  std::istringstream line(text.substr(at + 12, text.find('\n', at) - at - 12));
  for (std::string w; line >> w;) {
    const auto eq = w.find('=');
    if (eq != std::string::npos) kv[w.substr(0, eq)] = std::atof(w.c_str() + eq + 1);
  }
  return kv;
}

class TempDir {
 public:
  TempDir() {
    char t[] = "/tmp/ember-bench-XXXXXX";
    if (mkdtemp(t)) path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ember-vmm run --snapshot-at-ready DIR PROGRAM.
bool make_snapshot(const std::string& program, const std::string& dir, double* took_us) {
  const Spawned s = spawn_wait({self_dir() + "/ember-vmm", "run", "--snapshot-at-ready", dir, program});
  if (took_us) *took_us = s.end_us - s.spawn_us;
  if (s.status != 0) {
    std::fprintf(stderr, "ember-bench: snapshot of %s failed (status %d): %s", program.c_str(), s.status, s.err.c_str());
    return false;
  }
  return true;
}

nlohmann::json snapshot_size(const std::string& dir) {
  nlohmann::json j;
  uint64_t disk = 0;
  for (const char* f : {"vm.vmstate", "vm.mem", "vm.img"}) {
    struct stat st{};
    ::stat((dir + "/" + f).c_str(), &st);
    const uint64_t on_disk = static_cast<uint64_t>(st.st_blocks) * 512;
    j[f] = {{"apparent_bytes", st.st_size}, {"disk_bytes", on_disk}};
    disk += on_disk;
  }
  j["disk_bytes"] = disk;
  return j;
}

void print_size(const nlohmann::json& j) {
  std::printf("snapshot on disk: %.2f MiB (vm.mem %.2f of %.0f MiB, vm.vmstate %.1f KiB, vm.img %.1f KiB)\n",
              j["disk_bytes"].get<double>() / 1048576.0, j["vm.mem"]["disk_bytes"].get<double>() / 1048576.0,
              j["vm.mem"]["apparent_bytes"].get<double>() / 1048576.0,
              j["vm.vmstate"]["disk_bytes"].get<double>() / 1024.0, j["vm.img"]["disk_bytes"].get<double>() / 1024.0);
}

int finish(nlohmann::json& report, const std::string& json_path, int failures) {
  report["failures"] = failures;
  report["machine"] = nlohmann::json::parse(machine_json());
  const std::string json = report.dump();
  std::printf("%s\n", json.c_str());
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "ember-bench: %s: %s\n", json_path.c_str(), std::strerror(errno));
      return 1;
    }
    std::fprintf(f, "%s\n", json.c_str());
    std::fclose(f);
  }
  return failures == 0 ? 0 : 1;
}

// Quiet in-process VMs: no input, output to /dev/null.
MachineConfig quiet_config(const std::string& dir, int devnull) {
  MachineConfig c;
  c.restore_dir = dir;
  c.stdin_fd = -1;
  c.stdout_fd = devnull;
  c.stderr_fd = devnull;
  c.timeout_ms = 30000;
  return c;
}

const char kRestoreUsage[] =
    "usage: ember-bench restore [-n RUNS] [--program STATIC_ELF] [--json FILE]\n"
    "\n"
    "Takes a snapshot of STATIC_ELF at its ready point (ember-vmm run\n"
    "--snapshot-at-ready), then, interleaved run by run:\n"
    "  new process   ember-vmm restore DIR: from posix_spawn to the vCPU entering\n"
    "                the guest (EMBER_TRACE line), and the whole process\n"
    "  in-process    RestoredMachine::restore() to the vCPU entering the guest (the\n"
    "                same work without exec; the slow VM teardown is not counted)\n"
    "and the snapshot's size on disk. Times in microseconds.\n"
    "\n"
    "  -n RUNS        restores of each kind (default 1000)\n"
    "  --program P    default: echo-musl from the build's guest-programs/\n"
    "\n"
    "example: ember-bench restore -n 1000 --json restore.json\n";

const char kResetUsage[] =
    "usage: ember-bench reset [-n RUNS] [--json FILE]\n"
    "\n"
    "In this process, from snapshots taken at the ready point:\n"
    "  reset-to-ready   RestoredMachine::reset() (private pages dropped, vCPU, irqchip,\n"
    "                   clock, devices reloaded) to the vCPU entering the guest\n"
    "  cycle            one run of snapshot_counter (stdin over the console,\n"
    "                   prints 1) plus the reset after it\n"
    "  echo over vsock  connect, CONNECT 1024, stdin frame + EOF, stdout and the\n"
    "                   exit frame, with echo-musl on a VM reset in place between\n"
    "                   invocations (each 1 ms after the VM is ready again, as a\n"
    "                   pooled VM would be)\n"
    "Times in microseconds.\n"
    "\n"
    "  -n RUNS        of each (default 1000)\n"
    "\n"
    "example: ember-bench reset -n 1000 --json reset.json\n";

}  // namespace

int restore_bench(const std::vector<std::string>& args) {
  Options o;
  o.program = self_dir() + "/../guest-programs/echo-musl";
  if (auto r = parse("restore", args, &o, kRestoreUsage)) return *r;
  TempDir tmp;
  const std::string dir = tmp.path() + "/snap";
  double snap_us = 0;
  if (!make_snapshot(o.program, dir, &snap_us)) return 1;
  const int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);

  std::vector<double> proc_ready, proc_whole, inproc_ready, inproc_teardown;
  std::map<std::string, std::vector<double>> phases;
  int failures = 0;
  setenv("EMBER_TRACE", "1", 1);
  for (int i = 0; i < o.runs; i++) {
    const Spawned s = spawn_wait({self_dir() + "/ember-vmm", "restore", dir});
    const auto kv = parse_trace(s.err);
    if (s.status != 0 || !kv.count("main_mono_us") || !kv.count("first_run_us")) {
      if (++failures <= 3) std::fprintf(stderr, "ember-bench: restore %d: status %d: %s", i, s.status, s.err.c_str());
    } else {
      proc_ready.push_back(kv.at("main_mono_us") + kv.at("first_run_us") - s.spawn_us);
      proc_whole.push_back(s.end_us - s.spawn_us);
      for (const char* p : {"snapshot_open_us", "create_vm_us", "memory_us", "irqchip_us", "devices_us",
                            "event_loop_us", "vcpu_ready_us", "first_run_us"})
        if (kv.count(p)) phases[p].push_back(kv.at(p));
    }
    const double t0 = now_us();
    auto vm = RestoredMachine::restore(quiet_config(dir, devnull));
    if (!vm) {
      if (++failures <= 3) std::fprintf(stderr, "ember-bench: in-process restore %d: %s\n", i, vm.message().c_str());
      continue;
    }
    const uint64_t ready = (*vm)->resumed_ns();
    inproc_ready.push_back(static_cast<double>(ready) / 1e3 - t0);
    const double t1 = now_us();
    std::unique_ptr<RestoredMachine> owned = std::move(*vm);
    owned.reset();  // the VM's teardown (~15 ms here: the kernel's SRCU grace periods)
    inproc_teardown.push_back(now_us() - t1);
  }
  unsetenv("EMBER_TRACE");

  nlohmann::json report;
  report["benchmark"] = "restore";
  report["program"] = o.program;
  report["runs"] = o.runs;
  report["snapshot_create_us"] = snap_us;
  report["snapshot_size"] = snapshot_size(dir);
  print_header("restore (µs)");
  print_row("restore-to-ready, new process (spawn -> guest)", proc_ready, report["us"], "process_restore_to_ready");
  print_row("  whole ember-vmm restore process (EOF stdin)", proc_whole, report["us"], "process_whole");
  for (auto& [p, v] : phases) {
    const std::string label = "    " + p.substr(0, p.size() - 3) + " (since main)";
    print_row(label.c_str(), v, report["us"]["process_phases_since_main"], p.c_str());
  }
  print_row("restore-to-ready, in-process", inproc_ready, report["us"], "inprocess_restore_to_ready");
  print_row("  in-process VM teardown (not counted above)", inproc_teardown, report["us"], "inprocess_teardown");
  print_size(report["snapshot_size"]);
  std::printf("snapshot creation (whole ember-vmm run --snapshot-at-ready): %.1f ms\n", snap_us / 1e3);
  ::close(devnull);
  return finish(report, o.json_path, failures);
}

int reset_bench(const std::vector<std::string>& args) {
  Options o;
  if (auto r = parse("reset", args, &o, kResetUsage)) return *r;
  const std::string progs = self_dir() + "/../guest-programs/";
  TempDir tmp;
  const std::string counter = tmp.path() + "/counter", echo = tmp.path() + "/echo";
  if (!make_snapshot(progs + "snapshot_counter-musl", counter, nullptr)) return 1;
  if (!make_snapshot(progs + "echo-musl", echo, nullptr)) return 1;
  const int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  int failures = 0;

  // 1. Console: run + reset cycles of the counter program.
  std::vector<double> reset_ready, reset_main, cycle;
  {
    const std::string input = "x";
    MachineConfig c = quiet_config(counter, devnull);
    c.stdin_data = &input;
    auto vm = RestoredMachine::restore(c);
    if (!vm) {
      std::fprintf(stderr, "ember-bench reset: %s\n", vm.message().c_str());
      return 1;
    }
    (*vm)->resumed_ns();
    for (int i = 0; i < o.runs; i++) {
      const double t0 = now_us();
      const RunOutcome out = (*vm)->run();
      if (out.status != 0 || !out.error.empty()) {
        if (++failures <= 3) std::fprintf(stderr, "ember-bench reset: run %d: %d %s\n", i, out.status, out.error.c_str());
        break;
      }
      const double t1 = now_us();
      auto r = (*vm)->reset();
      const double t2 = now_us();
      if (!r) {
        if (++failures <= 3) std::fprintf(stderr, "ember-bench reset: %s\n", r.message().c_str());
        break;
      }
      const double ready = static_cast<double>((*vm)->resumed_ns()) / 1e3;
      reset_main.push_back(t2 - t1);
      reset_ready.push_back(ready - t1);
      cycle.push_back(ready - t0);
    }
  }

  // 2. vsock: echo invocations on a VM reset in place between them. The VM
  // runs its event loop on a thread of its own, as ember-vmm would in its
  // own process; an invocation starts once the VM is ready again.
  std::vector<double> echo_us, echo_reset_ready;
  {
    const std::string uds = tmp.path() + "/v.sock";
    MachineConfig c = quiet_config(echo, devnull);
    c.vsock_uds = uds;
    std::mutex mu;
    std::condition_variable cv;
    int ready_runs = 0;
    bool vm_failed = false;
    std::thread vm_thread([&] {
      auto vm = RestoredMachine::restore(c);
      if (!vm) {
        std::fprintf(stderr, "ember-bench reset: %s\n", vm.message().c_str());
        std::lock_guard<std::mutex> g(mu);
        vm_failed = true;
        cv.notify_all();
        return;
      }
      (*vm)->resumed_ns();
      for (int i = 0; i <= o.runs; i++) {
        {
          std::lock_guard<std::mutex> g(mu);
          ready_runs++;
          cv.notify_all();
        }
        if (i == o.runs) break;
        const RunOutcome out = (*vm)->run();
        const double t1 = now_us();
        if (out.status != 0 || !(*vm)->reset().ok()) {
          std::lock_guard<std::mutex> g(mu);
          vm_failed = true;
          cv.notify_all();
          return;
        }
        echo_reset_ready.push_back(static_cast<double>((*vm)->resumed_ns()) / 1e3 - t1);
      }
    });
    const std::string input = "hello, echo\n";
    for (int i = 0; i < o.runs; i++) {
      {
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return ready_runs > i || vm_failed; });
        if (vm_failed) {
          failures++;
          break;
        }
      }
      // A pooled VM has been ready for a while when a request comes: give
      // the restored guest time to settle (it takes its stdio connection,
      // which the VMM opens at the reset) before timing the invocation.
      std::this_thread::sleep_for(std::chrono::microseconds(1000));
      const double t0 = now_us();
      auto r = stdio::invoke(uds, input, 30000);
      const double t1 = now_us();
      if (!r || r->status() != 0 || r->out != input) {
        if (++failures <= 3) std::fprintf(stderr, "ember-bench reset: echo %d: %s\n", i, r ? "wrong answer" : r.message().c_str());
        continue;
      }
      echo_us.push_back(t1 - t0);
    }
    vm_thread.join();
  }

  nlohmann::json report;
  report["benchmark"] = "reset";
  report["runs"] = o.runs;
  report["snapshot_size_counter"] = snapshot_size(counter);
  report["snapshot_size_echo"] = snapshot_size(echo);
  print_header("reset in place (µs)");
  print_row("reset-to-ready (reset() -> guest)", reset_ready, report["us"], "reset_to_ready");
  print_row("  reset() on the event loop's thread", reset_main, report["us"], "reset_main_thread");
  print_row("run + reset cycle, snapshot_counter, console", cycle, report["us"], "cycle_console");
  print_row("echo invocation over vsock (connect -> exit)", echo_us, report["us"], "echo_vsock");
  print_row("  reset-to-ready after each echo", echo_reset_ready, report["us"], "echo_reset_to_ready");
  print_size(report["snapshot_size_echo"]);
  ::close(devnull);
  return finish(report, o.json_path, failures);
}

}  // namespace ember::bench

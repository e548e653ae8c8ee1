#include "bench/emberd_bench.h"

#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/self_path.h"
#include "bench/proc_memory.h"
#include "bench/stats.h"
#include "controller/system_limits.h"

extern char** environ;

namespace ember::bench {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

double us_since(Clock::time_point t0) { return std::chrono::duration<double, std::micro>(Clock::now() - t0).count(); }

const char* kUsage =
    "usage: ember-bench invoke [-n N] [--clients C] [--seconds S] [--pool P] [--density N[,N...]]\n"
    "                          [--density-mib M] [--unjailed] [--json FILE]\n"
    "\n"
    "Starts emberd (next to ember-bench) on a temporary state directory, deploys\n"
    "the bundled echo example, and measures through its HTTP API:\n"
    "  warm       N invocations one after another, pool P (parked VMs ready):\n"
    "             client round trip and emberd's own X-Ember-Duration-Us\n"
    "  cold       N invocations of a function with pool 0 (each restores a VM\n"
    "             on the spot)\n"
    "  throughput C clients invoking as fast as they can for S seconds\n"
    "  density    for each N: a function with pool N is deployed and filled;\n"
    "             time to fill, host memory per parked VM (MemAvailable drop\n"
    "             / N, and where it went: /proc/meminfo's anon, page tables,\n"
    "             KVM's page tables, kernel stacks, slab, per-CPU; each VMM's\n"
    "             private dirty pages and Pss from /proc/PID/smaps_rollup),\n"
    "             then one invocation on each of\n"
    "             them (C at a time); where filling stops, why\n"
    "\n"
    "options:\n"
    "  -n N             sequential invocations, warm and cold (default 200)\n"
    "  --clients C      concurrent clients (default 16)\n"
    "  --seconds S      throughput duration (default 5)\n"
    "  --pool P         warm pool size (default 4)\n"
    "  --density LIST   parked-VM counts, e.g. 1000,5000,10000 (default: skip)\n"
    "  --density-mib M  guest memory of the density function (default 16)\n"
    "  --unjailed       VMs without ember-jailer (default: emberd's own choice:\n"
    "                   jailed when root)\n"
    "  --json FILE      also write the JSON report to FILE\n"
    "\n"
    "example: ember-bench invoke -n 1000 --clients 32 --density 1000,5000\n";

struct Options {
  int n = 200;
  int clients = 16;
  int seconds = 5;
  int pool = 4;
  std::vector<int> density;
  int density_mib = 16;
  bool unjailed = false;
  std::string json_path;
};

bool parse(const std::vector<std::string>& args, Options* o, int* status) {
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& a = args[i];
    auto number = [&](int* out, int min) -> bool {
      if (i + 1 >= args.size()) return false;
      char* end = nullptr;
      const long v = std::strtol(args[++i].c_str(), &end, 10);
      if (!end || *end || v < min || v > 1000000) return false;
      *out = static_cast<int>(v);
      return true;
    };
    bool ok = true;
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      *status = 0;
      return false;
    } else if (a == "-n") {
      ok = number(&o->n, 1);
    } else if (a == "--clients") {
      ok = number(&o->clients, 1);
    } else if (a == "--seconds") {
      ok = number(&o->seconds, 1);
    } else if (a == "--pool") {
      ok = number(&o->pool, 0);
    } else if (a == "--density-mib") {
      ok = number(&o->density_mib, 16);
    } else if (a == "--unjailed") {
      o->unjailed = true;
    } else if (a == "--json" && i + 1 < args.size()) {
      o->json_path = args[++i];
    } else if (a == "--density" && i + 1 < args.size()) {
      std::stringstream ss(args[++i]);
      for (std::string item; std::getline(ss, item, ',');) {
        const int v = std::atoi(item.c_str());
        if (v < 1) ok = false;
        o->density.push_back(v);
      }
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "ember-bench invoke: bad argument '%s' (see --help)\n", a.c_str());
      *status = 2;
      return false;
    }
  }
  return true;
}

// As root, kernel.pid_max raised for the run to what `vms` VMs need (their
// tasks, and the host's own), and put back afterwards.
class PidMaxForRun {
 public:
  explicit PidMaxForRun(uint64_t vms) {
    const uint64_t want = vms * controller::kTasksPerVm + 8192;
    std::ifstream f(kPath);
    if (!(f >> old_) || old_ >= want || ::geteuid() != 0) return;
    const uint64_t raised = std::min<uint64_t>(std::max<uint64_t>(want, 131072), 4194304);
    if (std::ofstream(kPath) << raised << "\n") {
      std::printf("kernel.pid_max %llu -> %llu for this run\n", static_cast<unsigned long long>(old_),
                  static_cast<unsigned long long>(raised));
      restore_ = true;
    }
  }
  ~PidMaxForRun() {
    if (restore_) std::ofstream(kPath) << old_ << "\n";
  }

 private:
  static constexpr const char* kPath = "/proc/sys/kernel/pid_max";
  uint64_t old_ = 0;
  bool restore_ = false;
};

// emberd in the background, on its own state directory and a free port.
class Daemon {
 public:
  bool start(const std::string& bin_dir, const std::string& yaml) {
    char tmpl[] = "/tmp/ember-bench-emberd-XXXXXX";
    if (!::mkdtemp(tmpl)) return false;
    dir_ = tmpl;
    std::ofstream(dir_ + ".yaml") << yaml;
    const std::string log = dir_ + ".log";
    // --stop-with-parent: whatever ends this process (a signal, an uncaught
    // exception, SIGKILL) ends emberd and its VMs with it.
    std::vector<std::string> argv = {bin_dir + "/emberd", "--state-dir", dir_, "--listen", "127.0.0.1:0",
                                     "--config", dir_ + ".yaml", "--stop-with-parent"};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      std::fprintf(stderr, "ember-bench invoke: cannot start %s: %s\n", args[0], std::strerror(rc));
      return false;
    }
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < deadline) {
      std::ifstream f(dir_ + "/emberd.addr");
      std::string addr;
      if (std::getline(f, addr) && !addr.empty()) {
        url_ = addr;
        return true;
      }
      int st;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::fprintf(stderr, "ember-bench invoke: emberd did not start; its log (%s):\n", log.c_str());
    std::ifstream l(log);
    std::fprintf(stderr, "%s\n", std::string(std::istreambuf_iterator<char>(l), {}).c_str());
    return false;
  }
  ~Daemon() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      ::unlink((dir_ + ".yaml").c_str());
      ::unlink((dir_ + ".log").c_str());
    }
  }
  std::unique_ptr<httplib::Client> client() const {
    auto c = std::make_unique<httplib::Client>(url_);
    c->set_read_timeout(600, 0);
    c->set_write_timeout(60, 0);
    c->set_keep_alive(true);
    c->set_tcp_nodelay(true);  // else each POST's body waits out a delayed ACK (40 ms)
    return c;
  }
  const std::string& url() const { return url_; }

 private:
  pid_t pid_ = -1;
  std::string dir_, url_;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Deploys `image` as `name`; the answer's error text on failure.
bool deploy(httplib::Client& c, const std::string& name, const std::string& image, const json& options,
            std::string* error) {
  httplib::Headers h{{"X-Ember-Function", options.dump()}};
  auto r = c.Put("/v1/functions/" + name, h, image, "application/octet-stream");
  if (r && r->status == 201) return true;
  *error = r ? std::to_string(r->status) + " " + r->body : "no answer from emberd";
  return false;
}

json get_json(httplib::Client& c, const std::string& path) {
  auto r = c.Get(path);
  if (!r || r->status != 200) return json();
  return json::parse(r->body, nullptr, false);
}

struct Invocation {
  bool ok = false;
  double client_us = 0;  // request sent to answer read, as the client sees it
  double emberd_us = 0;  // X-Ember-Duration-Us
  bool pool_hit = false;
};

Invocation invoke(httplib::Client& c, const std::string& name, const std::string& input) {
  Invocation v;
  const auto t0 = Clock::now();
  auto r = c.Post("/v1/functions/" + name + "/invoke", input, "application/octet-stream");
  v.client_us = us_since(t0);
  v.ok = r && r->status == 200 && r->body == input && r->get_header_value("X-Ember-Exit-Code") == "0";
  if (r) {
    v.emberd_us = std::atof(r->get_header_value("X-Ember-Duration-Us").c_str());
    v.pool_hit = r->get_header_value("X-Ember-Pool") == "hit";
  }
  return v;
}

// N sequential invocations; the pool is given time to refill between them
// only by the client's own pace (that is what "warm" means to a user).
json sequential(httplib::Client& c, const std::string& name, int n, const char* title, int* failures) {
  std::vector<double> client, inside;
  int hits = 0;
  const std::string input = "hello from ember-bench\n";
  for (int i = 0; i < n; i++) {
    const Invocation v = invoke(c, name, input);
    if (!v.ok) {
      if (++*failures <= 3) std::fprintf(stderr, "ember-bench invoke: %s invocation %d failed\n", name.c_str(), i);
      continue;
    }
    client.push_back(v.client_us);
    inside.push_back(v.emberd_us);
    hits += v.pool_hit;
  }
  json j;
  print_header(title);
  print_row("  HTTP round trip, client side (µs)", client, j, "client_us");
  print_row("  inside emberd, X-Ember-Duration-Us (µs)", inside, j, "emberd_us");
  j["pool_hits"] = hits;
  std::printf("  pool hits: %d of %zu\n", hits, client.size());
  return j;
}

// C clients for `seconds`: completed invocations per second.
json throughput(const Daemon& d, const std::string& name, int clients, int seconds, int* failures) {
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<double> lat;
  std::atomic<int> ok{0}, bad{0};
  std::vector<std::thread> ts;
  const auto t0 = Clock::now();
  for (int t = 0; t < clients; t++)
    ts.emplace_back([&, t] {
      auto c = d.client();
      const std::string input = "client " + std::to_string(t) + "\n";
      std::vector<double> mine;
      while (!stop.load()) {
        const Invocation v = invoke(*c, name, input);
        if (v.ok) {
          ok++;
          mine.push_back(v.client_us);
        } else {
          bad++;
        }
      }
      std::lock_guard<std::mutex> g(mu);
      lat.insert(lat.end(), mine.begin(), mine.end());
    });
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  for (auto& t : ts) t.join();
  const double secs = us_since(t0) / 1e6;
  *failures += bad.load();
  json j;
  j["clients"] = clients;
  j["seconds"] = secs;
  j["ok"] = ok.load();
  j["failed"] = bad.load();
  j["per_second"] = ok.load() / secs;
  print_header("throughput, each client invoking back to back");
  print_row("  HTTP round trip under load (µs)", lat, j, "client_us");
  std::printf("  %d clients: %.0f invocations/s (%d ok, %d failed in %.1f s)\n", clients, ok.load() / secs, ok.load(),
              bad.load(), secs);
  return j;
}

// A function with pool N: fill, measure, invoke across all of it.
json density(const Daemon& d, const std::string& image, int n, int mib, int clients, int* failures) {
  auto c = d.client();
  const std::string name = "dense" + std::to_string(n);
  json j;
  j["target"] = n;
  const auto mem0 = meminfo_kib();
  const auto t0 = Clock::now();
  std::string error;
  if (!deploy(*c, name, image, json{{"pool", n}, {"memory_mib", mib}, {"max_concurrency", clients}}, &error)) {
    std::printf("\ndensity %d: deploy refused: %s\n", n, error.c_str());
    j["error"] = error;
    (*failures)++;
    return j;
  }
  // Fill until the pool is full, or it has not grown for 30 s.
  size_t ready = 0, best = 0;
  auto last_growth = Clock::now(), last_note = Clock::now();
  json fn;
  while (true) {
    fn = get_json(*c, "/v1/functions/" + name);
    ready = fn.is_object() ? fn["pool"]["ready"].get<size_t>() : 0;
    if (ready > best) {
      best = ready;
      last_growth = Clock::now();
    }
    if (ready >= static_cast<size_t>(n)) break;
    if (Clock::now() - last_growth > std::chrono::seconds(30)) break;
    if (Clock::now() - last_note > std::chrono::seconds(5)) {  // big pools take a while: show that it moves
      std::printf("density %d: %zu parked after %.0f s\n", n, ready, us_since(t0) / 1e6);
      last_note = Clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const double fill_s = us_since(t0) / 1e6;
  const auto mem1 = meminfo_kib();
  // What each parked VM holds, read from /proc here (emberd samples only
  // once a second): private dirty pages are its own (guest pages it wrote,
  // the VMM's heap and stacks); Pss adds its share of what VMs share (the
  // snapshot's page cache, the binaries).
  double vmm_dirty = 0, vmm_pss = 0;
  json vms = get_json(*c, "/v1/vms");
  size_t counted = 0;
  if (vms.is_array())
    for (const auto& v : vms) {
      if (v["function"] != name) continue;
      auto vmm = smaps_rollup_kib(v["pid"].get<pid_t>());
      if (vmm.empty()) continue;
      vmm_dirty += vmm["Private_Dirty"];
      vmm_pss += vmm["Pss"];
      counted++;
    }
  const auto per_vm_bytes = [&](double kib) { return counted ? kib * 1024 / static_cast<double>(counted) : 0.0; };
  j["ready"] = ready;
  j["fill_seconds"] = fill_s;
  // Host-wide, per VM filled: what MemAvailable lost, and where it went
  // (the kernel's share, page tables and KVM's, stacks, slab, per-CPU data
  // of each jail's cgroups, is not in any process's smaps).
  const auto host_delta_bytes = [&](const std::string& field) {
    auto get = [&](const std::map<std::string, double>& m) {
      auto it = m.find(field);
      return it == m.end() ? 0.0 : it->second;
    };
    return ready ? (get(mem1) - get(mem0)) * 1024 / static_cast<double>(ready) : 0.0;
  };
  j["host_bytes_per_vm"] = std::max(0.0, -host_delta_bytes("MemAvailable"));
  for (const char* field : {"AnonPages", "Shmem", "PageTables", "SecPageTables", "KernelStack", "Slab", "Percpu"})
    j["host_growth_bytes_per_vm"][field] = host_delta_bytes(field);
  j["vmm_private_dirty_bytes_per_vm"] = per_vm_bytes(vmm_dirty);
  j["vmm_pss_bytes_per_vm"] = per_vm_bytes(vmm_pss);
  if (ready < static_cast<size_t>(n)) {
    j["stopped_because"] = fn.is_object() ? fn["pool"]["last_error"].get<std::string>() : "emberd stopped answering";
    j["memory_limited"] = fn.is_object() && fn["pool"]["memory_limited"].get<bool>();
  }
  std::printf("\ndensity %d: %zu parked in %.1f s; host memory %.0f KiB per VM (MemAvailable); per VM: VMM %.0f KiB "
              "private dirty (Pss %.0f)\n",
              n, ready, fill_s, j["host_bytes_per_vm"].get<double>() / 1024,
              j["vmm_private_dirty_bytes_per_vm"].get<double>() / 1024, j["vmm_pss_bytes_per_vm"].get<double>() / 1024);
  std::printf("  host growth per VM, KiB (/proc/meminfo):");
  for (const auto& [field, bytes] : j["host_growth_bytes_per_vm"].items())
    std::printf(" %s %.0f", field.c_str(), bytes.get<double>() / 1024);
  std::printf("\n");
  if (j.contains("stopped_because"))
    std::printf("  stopped short: %s%s\n", j["stopped_because"].get<std::string>().c_str(),
                j["memory_limited"].get<bool>() ? " (memory budget)" : "");
  // One invocation per parked VM, `clients` at a time.
  std::atomic<int> next{0}, ok{0}, bad{0}, hits{0};
  std::mutex mu;
  std::vector<double> lat;
  const auto t1 = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < clients; t++)
    ts.emplace_back([&] {
      auto cc = d.client();
      std::vector<double> mine;
      while (next.fetch_add(1) < static_cast<int>(ready)) {
        const Invocation v = invoke(*cc, name, "x\n");
        if (v.ok) {
          ok++;
          hits += v.pool_hit;
          mine.push_back(v.client_us);
        } else {
          bad++;
        }
      }
      std::lock_guard<std::mutex> g(mu);
      lat.insert(lat.end(), mine.begin(), mine.end());
    });
  for (auto& t : ts) t.join();
  const double across_s = us_since(t1) / 1e6;
  j["invoke_all"] = {{"ok", ok.load()}, {"failed", bad.load()}, {"pool_hits", hits.load()}, {"seconds", across_s}};
  *failures += bad.load();
  print_header("  one invocation on each parked VM");
  print_row("    HTTP round trip (µs)", lat, j["invoke_all"], "client_us");
  std::printf("    %d ok (%d pool hits), %d failed, in %.1f s\n", ok.load(), hits.load(), bad.load(), across_s);
  auto del = c->Delete("/v1/functions/" + name);  // frees the memory for the next size
  if (!del || del->status != 204) std::fprintf(stderr, "ember-bench invoke: could not remove %s\n", name.c_str());
  // The next size's MemAvailable baseline must not include these VMs'
  // teardown (up to ~16 ms each, in the background).
  for (int i = 0; i < 600; i++) {
    const json vms = get_json(*c, "/v1/vms");
    if (!vms.is_array() ||
        std::none_of(vms.begin(), vms.end(), [&](const json& v) { return v["function"] == name; }))
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return j;
}

}  // namespace

int emberd_bench(const std::vector<std::string>& args) {
  Options o;
  int status = 0;
  if (!parse(args, &o, &status)) return status;
  const std::string bin_dir = self_dir();
  const std::string image = slurp(bin_dir + "/../examples/echo.img");
  if (image.empty()) {
    std::fprintf(stderr, "ember-bench invoke: %s/../examples/echo.img is missing (make build)\n", bin_dir.c_str());
    return 1;
  }
  std::string yaml = "log_level: warn\n";
  if (o.unjailed) yaml += "jailer:\n  enabled: false\n";
  const PidMaxForRun pid_max(o.density.empty() ? 0 : *std::max_element(o.density.begin(), o.density.end()));
  Daemon d;
  if (!d.start(bin_dir, yaml)) return 1;
  auto c = d.client();
  const json health = get_json(*c, "/healthz");
  std::printf("emberd at %s: %s mechanism, %s VMs\n", d.url().c_str(),
              health.is_object() ? health["mechanism"].get<std::string>().c_str() : "?",
              health.is_object() && health["jailed"].get<bool>() ? "jailed" : "unjailed");

  int failures = 0;
  json report;
  report["benchmark"] = "invoke";
  report["machine"] = json::parse(machine_json());
  report["emberd"] = health;
  std::string error;
  if (!deploy(*c, "warm", image, json{{"pool", o.pool}, {"max_concurrency", 4096}}, &error) ||
      !deploy(*c, "cold", image, json{{"pool", 0}, {"max_concurrency", 4096}}, &error)) {
    std::fprintf(stderr, "ember-bench invoke: deploy failed: %s\n", error.c_str());
    return 1;
  }
  // Let the warm pool fill before the first request.
  for (int i = 0; i < 3000; i++) {
    const json f = get_json(*c, "/v1/functions/warm");
    if (f.is_object() && f["pool"]["ready"].get<int>() >= o.pool) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  report["warm"] = sequential(*c, "warm", o.n, "echo, warm pool", &failures);
  report["warm"]["pool"] = o.pool;
  report["cold"] = sequential(*c, "cold", o.n, "echo, empty pool (restore on the spot)", &failures);
  report["throughput"] = throughput(d, "warm", o.clients, o.seconds, &failures);
  for (int n : o.density) report["density"].push_back(density(d, image, n, o.density_mib, o.clients, &failures));
  report["failures"] = failures;

  const std::string text = report.dump(2);
  std::printf("\n%s\n", text.c_str());
  if (!o.json_path.empty()) std::ofstream(o.json_path) << text << "\n";
  if (failures) std::fprintf(stderr, "ember-bench invoke: %d invocation(s) failed\n", failures);
  return failures ? 1 : 0;
}

}  // namespace ember::bench

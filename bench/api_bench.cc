#include "bench/api_bench.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/self_path.h"
#include "bench/proc_memory.h"
#include "bench/stats.h"

extern char** environ;

namespace ember::bench {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

double us_since(Clock::time_point t0) { return std::chrono::duration<double, std::micro>(Clock::now() - t0).count(); }


struct Child {
  pid_t pid = -1;
  int stdin_fd = -1;  // write end, kept open so that the guest blocks reading stdin
};

// Spawns argv with stdout/stderr on /dev/null and stdin on a pipe (or /dev/null).
std::optional<Child> spawn(const std::vector<std::string>& argv, bool stdin_pipe) {
  int in[2] = {-1, -1};
  if (stdin_pipe && pipe2(in, O_CLOEXEC) != 0) return std::nullopt;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (stdin_pipe) posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  else posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  Child c;
  const int rc = posix_spawn(&c.pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (stdin_pipe) close(in[0]);
  if (rc != 0) {
    fprintf(stderr, "ember-bench api: spawn %s: %s\n", argv[0].c_str(), strerror(rc));
    if (stdin_pipe) close(in[1]);
    return std::nullopt;
  }
  c.stdin_fd = in[1];
  return c;
}

// SIGKILL and reap; the child's CPU time in µs.
double kill_and_reap(Child& c) {
  kill(c.pid, SIGKILL);
  int ws;
  rusage ru{};
  wait4(c.pid, &ws, 0, &ru);
  if (c.stdin_fd >= 0) close(c.stdin_fd);
  c.pid = -1;
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec +
         ru.ru_stime.tv_usec;
}

int connect_unix(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// One request on a raw keep-alive connection; false if no complete answer.
bool raw_request(int fd, const std::string& req) {
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return false;
  std::string got;
  for (;;) {
    const size_t head = got.find("\r\n\r\n");
    if (head != std::string::npos) {
      size_t len = 0;
      const size_t cl = got.find("Content-Length: ");
      if (cl != std::string::npos && cl < head) len = std::stoul(got.substr(cl + 16));
      if (got.size() >= head + 4 + len) return true;
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) return false;
    char buf[4096];
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    got.append(buf, static_cast<size_t>(n));
  }
}

class Curl {
 public:
  explicit Curl(const std::string& sock) : sock_(sock), h_(curl_easy_init()) {}
  ~Curl() { curl_easy_cleanup(h_); }
  long request(const char* method, const std::string& path, const std::string& body = {}) {
    curl_easy_setopt(h_, CURLOPT_UNIX_SOCKET_PATH, sock_.c_str());
    const std::string url = "http://localhost" + path;
    curl_easy_setopt(h_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h_, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h_, CURLOPT_TIMEOUT_MS, 10000L);
    curl_slist* headers = nullptr;
    if (!body.empty()) {
      headers = curl_slist_append(headers, "Content-Type: application/json");
      headers = curl_slist_append(headers, "Expect:");
      curl_easy_setopt(h_, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(h_, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    } else {
      curl_easy_setopt(h_, CURLOPT_POSTFIELDS, nullptr);
      curl_easy_setopt(h_, CURLOPT_HTTPGET, std::strcmp(method, "GET") == 0 ? 1L : 0L);
      curl_easy_setopt(h_, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(h_, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h_, CURLOPT_WRITEFUNCTION, +[](char*, size_t s, size_t n, void*) { return s * n; });
    long status = 0;
    if (curl_easy_perform(h_) == CURLE_OK) curl_easy_getinfo(h_, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(h_, CURLOPT_HTTPHEADER, nullptr);
    if (headers) curl_slist_free_all(headers);
    return status;
  }

 private:
  std::string sock_;
  CURL* h_;
};

bool wait_socket(const std::string& path, double timeout_us = 5e6) {
  const auto t0 = Clock::now();
  while (us_since(t0) < timeout_us) {
    const int fd = connect_unix(path);
    if (fd >= 0) {
      close(fd);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return false;
}

// kB figures of one process.
struct Memory {
  std::map<std::string, double> rollup;  // smaps_rollup fields
  double guest_ram_private_kib = 0, guest_ram_rss_kib = 0;
};

Memory read_memory(pid_t pid, uint64_t guest_ram_bytes) {
  Memory m;
  m.rollup = smaps_rollup_kib(pid);
  // The guest's RAM: the anonymous mapping of guest_ram_bytes.
  std::ifstream smaps("/proc/" + std::to_string(pid) + "/smaps");
  bool in_ram = false;
  for (std::string line; std::getline(smaps, line);) {
    // A mapping's header: "lo-hi perms offset dev inode [path]"; its fields: "Key:   N kB".
    const size_t dash = line.find('-'), space = line.find(' ');
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && dash != std::string::npos &&
        dash < space) {
      std::istringstream hdr(line);
      std::string range, perms, offset, dev, inode, path;
      hdr >> range >> perms >> offset >> dev >> inode;
      std::getline(hdr, path);
      const auto dash = range.find('-');
      const uint64_t lo = std::stoull(range.substr(0, dash), nullptr, 16);
      const uint64_t hi = std::stoull(range.substr(dash + 1), nullptr, 16);
      // The kernel may merge a small anonymous neighbour into it (same
      // flags): up to 2 MiB more is still "the guest's RAM" here, which
      // can only overstate the guest's share, never the VMM's.
      in_ram = inode == "0" && path.find_first_not_of(' ') == std::string::npos && hi - lo >= guest_ram_bytes &&
               hi - lo <= guest_ram_bytes + (2u << 20);
      continue;
    }
    if (!in_ram) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, colon);
    const double kib = std::atof(line.c_str() + colon + 1);
    if (key == "Private_Clean" || key == "Private_Dirty") m.guest_ram_private_kib += kib;
    if (key == "Rss") m.guest_ram_rss_kib += kib;
  }
  return m;
}

void usage() {
  printf(
      "usage: ember-bench api [-n RUNS] [--requests N] [--vms K] [--json FILE]\n"
      "\n"
      "The VMM API's costs, each on fresh ember-vmm processes in API mode:\n"
      "  start    spawn `ember-vmm --api-sock S` until S accepts a connection\n"
      "           (polled every 20 µs), and\n"
      "           until GET / is answered; the CPU time the process used by then;\n"
      "           `ember-vmm --api-sock S --help` (exec + exit) as the floor\n"
      "  boot     PUT /actions InstanceStart, and InstanceStart until GET / says\n"
      "           guest_ready (the program blocks reading stdin)\n"
      "  latency  requests over one keep-alive libcurl connection: GET /, PUT\n"
      "           /machine-config and /boot-source before boot; GET /, GET\n"
      "           /vm/config, PATCH /vm Paused and Resumed with a live guest; GET /\n"
      "           over a raw socket (no client library)\n"
      "  memory   K VMMs, each with a booted guest idle on stdin (echo-musl):\n"
      "           RSS, PSS, private (RSS minus shared: Private_Clean +\n"
      "           Private_Dirty from /proc/PID/smaps_rollup), and the private\n"
      "           memory outside the guest's RAM mapping (the VMM's own)\n"
      "\n"
      "  -n RUNS        start-up runs (default 200)\n"
      "  --requests N   requests per latency figure (default 1000)\n"
      "  --boots B      VMs booted through the API for the InstanceStart figures\n"
      "                 (default 50; the guest program is echo-musl)\n"
      "  --vms K        VMMs in the memory figure (default 3: text pages shared\n"
      "                 between VMMs count as shared, as on a host running many)\n"
      "\n"
      "example: ember-bench api -n 200 --requests 1000\n");
}

}  // namespace

int api_bench(const std::vector<std::string>& args) {
  int runs = 200, requests = 1000, vms = 3, boots = 50;
  std::string json_path;
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) {
        fprintf(stderr, "ember-bench api: %s needs a value\n", a.c_str());
        exit(2);
      }
      return args[++i];
    };
    if (a == "-n") runs = std::atoi(value().c_str());
    else if (a == "--requests") requests = std::atoi(value().c_str());
    else if (a == "--vms") vms = std::atoi(value().c_str());
    else if (a == "--boots") boots = std::atoi(value().c_str());
    else if (a == "--json") json_path = value();
    else if (a == "-h" || a == "--help") {
      usage();
      return 0;
    } else {
      fprintf(stderr, "ember-bench api: unknown argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (runs < 1 || requests < 1 || vms < 1 || boots < 0) {
    fprintf(stderr, "ember-bench api: -n, --requests and --vms must be at least 1\n");
    return 2;
  }
  const std::string bin = self_dir();
  const std::string vmm = bin + "/ember-vmm", kernel = bin + "/ember-guest.elf";
  const std::string echo = std::filesystem::weakly_canonical(bin + "/../guest-programs/echo-musl").string();
  const auto dir = std::filesystem::temp_directory_path() / ("ember-bench-api-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string sock = (dir / "api.sock").string();
  const std::string image = (dir / "echo.img").string();
  curl_global_init(CURL_GLOBAL_DEFAULT);
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  int failures = 0;
  json report;
  report["benchmark"] = "api";
  report["machine"] = json::parse(machine_json());

  // --- start: process start to socket ready, to first answer ---------------
  std::vector<double> ready_us, answer_us, cpu_us, floor_us;
  for (int i = 0; i < runs; i++) {
    {
      const auto t0 = Clock::now();
      auto c = spawn({vmm, "--api-sock", sock, "--help"}, false);
      if (!c) return 1;
      int ws;
      waitpid(c->pid, &ws, 0);
      floor_us.push_back(us_since(t0));
    }
    unlink(sock.c_str());
    const auto t0 = Clock::now();
    auto c = spawn({vmm, "--api-sock", sock}, false);
    if (!c) return 1;
    // Poll every 20 µs (timer slack 1 ns): spinning would take the CPU the
    // VMM needs on a 2-core machine.
    int fd = -1;
    while ((fd = connect_unix(sock)) < 0 && us_since(t0) < 5e6) {
      const timespec ts{0, 20000};
      nanosleep(&ts, nullptr);
    }
    if (fd < 0) {
      failures++;
      kill_and_reap(*c);
      continue;
    }
    ready_us.push_back(us_since(t0));
    if (raw_request(fd, "GET / HTTP/1.1\r\nHost: l\r\n\r\n")) answer_us.push_back(us_since(t0));
    else failures++;
    close(fd);
    cpu_us.push_back(kill_and_reap(*c));
  }
  unlink(sock.c_str());

  // --- the image every guest below runs ---------------------------------------
  {
    auto c = spawn({bin + "/ember-image", "pack", "-o", image, "--exec", echo, "--arg", "echo"}, false);
    int ws = 0;
    if (!c || waitpid(c->pid, &ws, 0) < 0 || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
      fprintf(stderr, "ember-bench api: packing %s failed\n", echo.c_str());
      return 1;
    }
  }
  const uint64_t mem_mib = 128;
  const std::string boot = json{{"kernel_image_path", kernel}, {"initrd_path", image}}.dump();
  const std::string machine = json{{"vcpu_count", 1}, {"mem_size_mib", mem_mib}}.dump();

  // --- latency before boot -----------------------------------------------------
  std::map<std::string, std::vector<double>> latency;
  {
    auto c = spawn({vmm, "--api-sock", sock}, true);
    if (!c || !wait_socket(sock)) return 1;
    Curl api(sock);
    for (int i = 0; i < requests; i++) {
      auto t0 = Clock::now();
      failures += api.request("GET", "/") != 200;
      latency["GET / (not started)"].push_back(us_since(t0));
      t0 = Clock::now();
      failures += api.request("PUT", "/machine-config", machine) != 204;
      latency["PUT /machine-config"].push_back(us_since(t0));
      t0 = Clock::now();
      failures += api.request("PUT", "/boot-source", boot) != 204;
      latency["PUT /boot-source"].push_back(us_since(t0));
    }
    kill_and_reap(*c);
    unlink(sock.c_str());
  }

  // --- boots through the API: InstanceStart, and until the guest is ready ---
  std::vector<double> instance_start_us, boot_ready_us;
  for (int i = 0; i < boots; i++) {
    unlink(sock.c_str());
    auto c = spawn({vmm, "--api-sock", sock}, true);
    if (!c || !wait_socket(sock)) return 1;
    {
      Curl api(sock);
      failures += api.request("PUT", "/machine-config", machine) != 204;
      failures += api.request("PUT", "/boot-source", boot) != 204;
      const auto t0 = Clock::now();
      if (api.request("PUT", "/actions", R"({"action_type": "InstanceStart"})") != 204) {
        failures++;
      } else {
        instance_start_us.push_back(us_since(t0));
        const int fd = connect_unix(sock);
        const std::string get = "GET / HTTP/1.1\r\nHost: l\r\n\r\n";
        // GET / until guest_ready (raw socket: no client overhead in the figure).
        bool ready = false;
        while (!ready && us_since(t0) < 5e6) {
          if (send(fd, get.data(), get.size(), MSG_NOSIGNAL) < 0) break;
          std::string got;
          char buf[1024];
          while (got.find('}') == std::string::npos) {
            const ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n <= 0) break;
            got.append(buf, static_cast<size_t>(n));
          }
          ready = got.find("\"guest_ready\":true") != std::string::npos;
        }
        if (ready) boot_ready_us.push_back(us_since(t0));
        else failures++;
        close(fd);
      }
    }
    kill_and_reap(*c);
    // Closing a VM costs the kernel ~15 ms (vmm/README.md): let that pass
    // before the next boot instead of measuring it.
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  unlink(sock.c_str());

  // --- memory of K idle VMMs with booted guests, then latency on one ---------
  std::vector<Child> children;
  std::vector<std::string> socks;
  for (int k = 0; k < vms; k++) {
    socks.push_back((dir / ("vm" + std::to_string(k) + ".sock")).string());
    auto c = spawn({vmm, "--api-sock", socks.back()}, true);
    if (!c || !wait_socket(socks.back())) return 1;
    children.push_back(*c);
    Curl api(socks.back());
    failures += api.request("PUT", "/machine-config", machine) != 204;
    failures += api.request("PUT", "/boot-source", boot) != 204;
    failures += api.request("PUT", "/actions", R"({"action_type": "InstanceStart"})") != 204;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // guests settle, blocked on stdin
  std::vector<double> rss, pss, priv, shared, ram_priv, vmm_priv;
  for (const Child& c : children) {
    Memory m = read_memory(c.pid, mem_mib << 20);
    rss.push_back(m.rollup["Rss"]);
    pss.push_back(m.rollup["Pss"]);
    const double p = m.rollup["Private_Clean"] + m.rollup["Private_Dirty"];
    priv.push_back(p);
    shared.push_back(m.rollup["Shared_Clean"] + m.rollup["Shared_Dirty"]);
    ram_priv.push_back(m.guest_ram_private_kib);
    vmm_priv.push_back(p - m.guest_ram_private_kib);
  }
  {
    Curl api(socks[0]);
    const int fd = connect_unix(socks[0]);
    for (int i = 0; i < requests; i++) {
      auto t0 = Clock::now();
      failures += api.request("GET", "/") != 200;
      latency["GET / (running)"].push_back(us_since(t0));
      t0 = Clock::now();
      failures += api.request("GET", "/vm/config") != 200;
      latency["GET /vm/config"].push_back(us_since(t0));
      t0 = Clock::now();
      failures += api.request("PATCH", "/vm", R"({"state": "Paused"})") != 204;
      latency["PATCH /vm Paused"].push_back(us_since(t0));
      t0 = Clock::now();
      failures += api.request("PATCH", "/vm", R"({"state": "Resumed"})") != 204;
      latency["PATCH /vm Resumed"].push_back(us_since(t0));
      t0 = Clock::now();
      failures += !raw_request(fd, "GET / HTTP/1.1\r\nHost: l\r\n\r\n");
      latency["GET / (raw socket)"].push_back(us_since(t0));
    }
    close(fd);
  }
  for (Child& c : children) kill_and_reap(c);
  std::filesystem::remove_all(dir);
  curl_global_cleanup();

  // --- report --------------------------------------------------------------
  printf("%-44s %7s %9s %9s %9s %9s\n", "ember-vmm API (µs)", "n", "min", "p50", "p99", "max");
  auto row = [&](const std::string& name, const std::vector<double>& v, json& into) {
    const Summary s = summarize(v);
    printf("%-44s %7zu %9.1f %9.1f %9.1f %9.1f\n", name.c_str(), s.n, s.min, s.p50, s.p99, s.max);
    into[name] = summary_json(s);
  };
  row("start: spawn to socket ready", ready_us, report["start_us"]);
  row("start: spawn to first answer (GET /)", answer_us, report["start_us"]);
  row("start: CPU time used by then", cpu_us, report["start_us"]);
  row("floor: spawn to exit of ember-vmm --help", floor_us, report["start_us"]);
  row("InstanceStart (PUT /actions)", instance_start_us, report["boot_us"]);
  row("InstanceStart to guest_ready (echo-musl)", boot_ready_us, report["boot_us"]);
  for (auto& [name, v] : latency) row(name, v, report["latency_us"]);
  printf("%-44s %7s %9s %9s %9s %9s\n", "memory, idle VMM + booted guest (KiB)", "n", "min", "p50", "p99", "max");
  row("RSS", rss, report["memory_kib"]);
  row("PSS", pss, report["memory_kib"]);
  row("shared (Shared_Clean + Shared_Dirty)", shared, report["memory_kib"]);
  row("private (RSS - shared)", priv, report["memory_kib"]);
  row("  of it in the guest's RAM mapping", ram_priv, report["memory_kib"]);
  row("  of it the VMM's own (outside guest RAM)", vmm_priv, report["memory_kib"]);
  report["runs"] = runs;
  report["requests"] = requests;
  report["vms"] = vms;
  report["boots"] = boots;
  report["guest_mem_mib"] = mem_mib;
  report["failures"] = failures;
  const std::string out = report.dump();
  printf("%s\n", out.c_str());
  if (!json_path.empty()) {
    FILE* f = fopen(json_path.c_str(), "w");
    if (!f) {
      fprintf(stderr, "ember-bench api: %s: %s\n", json_path.c_str(), strerror(errno));
      return 1;
    }
    fprintf(f, "%s\n", out.c_str());
    fclose(f);
  }
  if (failures) fprintf(stderr, "ember-bench api: %d failed requests or runs\n", failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace ember::bench

// Test fixture for emberd's end-to-end tests (tests/integration/emberd_*):
// starts a real emberd on a fresh state directory and a free port, talks to
// it over HTTP (cpp-httplib), stops it. Tests skip where /dev/kvm is missing.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "controller/fsutil.h"
#include "tests/integration/subprocess.h"

extern char** environ;

namespace ember::testing {

inline std::string ctl_bin(const std::string& name) { return std::string(EMBER_BIN_DIR) + "/" + name; }
inline std::string fnprobe_path() { return std::string(EMBER_BIN_DIR) + "/../controller-testdata/fnprobe"; }
inline std::string example_image(const std::string& name) {
  return std::string(EMBER_BIN_DIR) + "/../examples/" + name + ".img";
}
// All of a file; "" when it cannot be opened. read(2), not a stream: a /proc
// file of a process that exits mid-read fails the read (ESRCH), which a
// stream turns into an exception; here it ends the text.
inline std::string slurp(const std::string& path) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[65536];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}
inline bool process_alive(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  // A zombie is not alive.
  const std::string all = slurp("/proc/" + std::to_string(pid) + "/stat");
  const auto rp = all.rfind(')');
  return rp != std::string::npos && rp + 2 < all.size() && all[rp + 2] != 'Z';
}

// The children of `parent` that run the program `comm`, from /proc/PID/stat
// ("pid (comm) state ppid ..."); zombies only if `zombies_too`.
inline std::vector<pid_t> children_named(pid_t parent, const std::string& comm, bool zombies_too = false) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = slurp("/proc/" + name + "/stat");
    const auto open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close + 4 >= stat.size()) continue;
    if (stat.substr(open + 1, close - open - 1) != comm || (stat[close + 2] == 'Z' && !zombies_too)) continue;
    if (std::atoi(stat.c_str() + close + 4) == parent) out.push_back(std::stoi(name));
  }
  return out;
}

class Emberd {
 public:
  // Starts emberd on `state_dir` with an optional YAML config.
  void start(const std::string& state_dir, const std::string& yaml = "") {
    state_dir_ = state_dir;
    ::unlink((state_dir + "/emberd.addr").c_str());
    std::vector<std::string> argv = {ctl_bin("emberd"), "--state-dir", state_dir, "--listen", "127.0.0.1:0"};
    if (!yaml.empty()) {
      config_ = state_dir + ".yaml";
      std::ofstream(config_) << yaml;
      argv.insert(argv.end(), {"--config", config_});
    }
    log_ = state_dir + ".log";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ASSERT_EQ(::posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      std::string addr = slurp(state_dir + "/emberd.addr");
      if (!addr.empty() && addr.back() == '\n') {
        addr.pop_back();
        url_ = addr;
        client_ = std::make_unique<httplib::Client>(url_);
        client_->set_read_timeout(120, 0);
        client_->set_write_timeout(60, 0);
        return;
      }
      int st;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "emberd exited at start:\n" << slurp(log_);
        throw std::runtime_error("emberd exited at start");  // ends the test: nothing to talk to
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ADD_FAILURE() << "emberd did not start:\n" << slurp(log_);
    throw std::runtime_error("emberd did not start within 60 s");
  }

  // SIGTERM (graceful) or SIGKILL (crash); waits for the process.
  int stop(int sig = SIGTERM) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
    client_.reset();
    return st;
  }
  ~Emberd() { stop(); }

  pid_t pid() const { return pid_; }
  const std::string& url() const { return url_; }
  std::string log() const { return slurp(log_); }
  httplib::Client& http() { return *client_; }
  // A new client (one per thread: httplib clients are not shared).
  std::unique_ptr<httplib::Client> new_client() const {
    auto c = std::make_unique<httplib::Client>(url_);
    c->set_read_timeout(120, 0);
    return c;
  }

  httplib::Result deploy(const std::string& name, const std::string& body, const nlohmann::json& options = {}) {
    httplib::Headers h;
    if (!options.is_null()) h.emplace("X-Ember-Function", options.dump());
    return client_->Put("/v1/functions/" + name, h, body, "application/octet-stream");
  }
  httplib::Result invoke(const std::string& name, const std::string& input) {
    return client_->Post("/v1/functions/" + name + "/invoke", input, "application/octet-stream");
  }
  nlohmann::json get_json(const std::string& path) {
    auto r = client_->Get(path);
    if (!r || r->status != 200) return nlohmann::json();
    return nlohmann::json::parse(r->body, nullptr, false);
  }
  nlohmann::json function(const std::string& name) { return get_json("/v1/functions/" + name); }
  nlohmann::json vms() { return get_json("/v1/vms"); }

  // Waits until the function's pool has `n` VMs ready.
  bool wait_pool(const std::string& name, size_t n, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      auto f = function(name);
      if (f.is_object() && f["pool"]["ready"].get<size_t>() >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  // The /metrics text as {"name{labels}": value}; fails the test on a line
  // that is not Prometheus text format.
  std::map<std::string, double> metrics() {
    std::map<std::string, double> m;
    auto r = client_->Get("/metrics");
    EXPECT_TRUE(r);
    if (!r) return m;
    EXPECT_EQ(r->status, 200);
    EXPECT_NE(r->get_header_value("Content-Type").find("text/plain"), std::string::npos);
    static const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?) (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$)");
    static const std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*$)");
    std::istringstream in(r->body);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      if (line[0] == '#') {
        EXPECT_TRUE(std::regex_match(line, comment)) << "bad comment line: " << line;
        continue;
      }
      std::smatch sm;
      if (!std::regex_match(line, sm, sample)) {
        ADD_FAILURE() << "not Prometheus text format: " << line;
        continue;
      }
      m[sm[1]] = std::stod(sm[3]);
    }
    return m;
  }

 private:
  pid_t pid_ = -1;
  std::string state_dir_, config_, log_, url_;
  std::unique_ptr<httplib::Client> client_;
};

// Every emberd test runs in each of these modes (GetParam()):
//   defaults        emberd's own choice (as root with ember-jailer: jailed VMs)
//   unjailed        jailer off: template snapshots + restore over vsock where the VMM has them
//   boot-unjailed   jailer off, mechanism boot: a VM booted per invocation, stdio over pipes
inline std::string mode_yaml(const std::string& mode) {
  if (mode == "unjailed") return "jailer:\n  enabled: false\n";
  if (mode == "boot-unjailed") return "jailer:\n  enabled: false\nmechanism: boot\n";
  return "";
}
inline const std::vector<std::string>& emberd_modes() {
  static const std::vector<std::string> m = {"defaults", "unjailed", "boot-unjailed"};
  return m;
}

class EmberdTest : public ::testing::TestWithParam<std::string> {
 protected:
  // Starts emberd in this test's mode, with `yaml` (top-level keys other
  // than jailer/mechanism) on top.
  void start(const std::string& yaml = "") { d_.start(dir_, mode_yaml(GetParam()) + yaml); }

  void SetUp() override {
    std::string why;
    if (!kvm_available(&why)) GTEST_SKIP() << why;
    ::signal(SIGPIPE, SIG_IGN);  // servers close connections on refused bodies
    char tmpl[] = "/tmp/emberd-t-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    d_.stop();
    if (!dir_.empty() && !HasFailure()) {
      controller::remove_tree(dir_);
      ::unlink((dir_ + ".log").c_str());
      ::unlink((dir_ + ".yaml").c_str());
    } else if (!dir_.empty()) {
      std::fprintf(stderr, "emberd log (%s.log):\n%s\n", dir_.c_str(), d_.log().c_str());
    }
  }
  // The VMM processes whose --id carries this daemon's prefix (none other
  // runs with our state dir), as seen in /proc.
  std::vector<pid_t> vmm_pids() {
    std::vector<pid_t> pids;
    auto vms = d_.vms();
    if (vms.is_array())
      for (auto& v : vms) pids.push_back(v["pid"].get<pid_t>());
    return pids;
  }
  // The live ember-vmm processes that are emberd's children (jailed VMMs
  // too: ember-jailer --detach makes them so), from /proc: what runs, not
  // what emberd has on record.
  std::vector<pid_t> live_vmm_children() { return children_named(d_.pid(), "ember-vmm"); }
  // What a VM leaves on the host while it runs: its VMM process, and jailed,
  // its jail directory and cgroups (no ember-jailer stays: --detach).
  struct VmTraces {
    std::vector<pid_t> pids;
    std::vector<std::string> paths;
  };
  VmTraces vm_traces() {
    VmTraces t;
    auto vms = d_.vms();
    if (!vms.is_array()) return t;
    for (auto& v : vms) {
      const pid_t vmm = v["pid"].get<pid_t>();
      t.pids.push_back(vmm);
      if (!v["jailed"].get<bool>()) continue;
      const std::string jail = "/srv/ember/ember-vmm/" + v["id"].get<std::string>();
      EXPECT_TRUE(controller::path_exists(jail)) << jail;
      t.paths.push_back(jail);
      const auto dirs = cgroup_dirs(vmm);
      if (dirs.empty() && !process_alive(vmm)) continue;  // it ended since the listing (a VM replaced)
      EXPECT_FALSE(dirs.empty()) << "jailed VMM " << vmm << " is in no cgroup of its own";
      t.paths.insert(t.paths.end(), dirs.begin(), dirs.end());
    }
    return t;
  }
  // The cgroup directories of `pid` below a hierarchy's root, from
  // /proc/PID/cgroup ("N:controllers:/path"; v2 has no controllers), where
  // they exist under /sys/fs/cgroup.
  static std::vector<std::string> cgroup_dirs(pid_t pid) {
    std::vector<std::string> dirs;
    std::istringstream f(slurp("/proc/" + std::to_string(pid) + "/cgroup"));
    for (std::string line; std::getline(f, line);) {
      const auto a = line.find(':'), b = line.find(':', a + 1);
      if (a == std::string::npos || b == std::string::npos || line.size() <= b + 2) continue;
      std::string ctrl = line.substr(a + 1, b - a - 1);
      if (ctrl.rfind("name=", 0) == 0) ctrl = ctrl.substr(5);
      const std::string dir = "/sys/fs/cgroup" + (ctrl.empty() ? "" : "/" + ctrl) + line.substr(b + 1);
      if (controller::path_exists(dir)) dirs.push_back(dir);
    }
    return dirs;
  }
  std::string dir_;
  Emberd d_;
};

}  // namespace ember::testing

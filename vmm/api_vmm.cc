#include "vmm/api_vmm.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "api/control.h"
#include "base/cli_option.h"
#include "base/fd.h"
#include "vmm/api_handlers.h"
#include "vmm/api_server.h"
#include "vmm/api_snapshot.h"
#include "vmm/log.h"
#include "vmm/machine.h"
#include "vmm/program_image.h"
#include "vmm/teardown.h"
#include "vmm/vmm_config.h"

namespace ember {

namespace {

constexpr int kExitVmm = 125;
constexpr size_t kMaxConfigFile = 1 << 20;
constexpr uint64_t kMetricsPeriodS = 60;  // as Firecracker

bool parse_uint(const std::string& s, uint64_t max, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > max) return false;
  *out = v;
  return true;
}

void print_line(const std::string& message) {
  const std::string line = "ember-vmm: " + message + "\n";
  ssize_t r = ::write(2, line.data(), line.size());
  (void)r;
}

Result<std::string> read_small_file(const std::string& path, size_t max) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno_error(path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return errno_error(path);
  if (!S_ISREG(st.st_mode)) return Error{path + ": not a regular file"};
  if (static_cast<uint64_t>(st.st_size) > max)
    return Error{path + ": too large (" + std::to_string(st.st_size) + " bytes, max " + std::to_string(max) + ")"};
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::read(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(path);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  text.resize(done);
  return text;
}

enum Tag : uint64_t { kTagSignal = 1, kTagApi, kTagMachine, kTagMetrics };

// The API-mode VMM: the event loop, the VM backend and the process's
// resources. One per process.
class ApiVmm : public MachineBackend {
 public:
  ApiVmm(const ApiCliOptions& o, uint64_t t0)
      : options_(o),
        t0_(t0),
        log_(o.verbose),
        controller_(this),
        handlers_(&controller_, &metrics_sink_, o.id, [this](nlohmann::json& j) { add_metrics(j); }) {}

  int run();

  // MachineBackend
  Result<void> start(const VmmConfig& config) override;
  Result<void> pause() override;
  Result<void> resume() override;
  Result<void> create_snapshot(const SnapshotCreateSpec& spec) override;
  Result<void> load_snapshot(const SnapshotLoadSpec& spec, VmmConfig* config) override;
  bool guest_ready() const override { return runner_ && runner_->guest_ready(); }

 private:
  Result<void> setup();
  Result<void> watch(int fd, Tag tag);
  MachineConfig machine_config() const;  // what every VM of this process shares
  Result<void> run_vm(const MachineConfig& mc);
  void on_machine();
  void arm_metrics_timer();
  void add_metrics(nlohmann::json& j) const;
  int shutdown(int status);

  ApiCliOptions options_;
  uint64_t t0_;
  Log log_;
  FileMetricsSink metrics_sink_;
  VmmController controller_;
  ApiHandlers handlers_;
  std::unique_ptr<ApiServer> server_;
  Fd epoll_, signal_fd_, metrics_timer_;
  bool metrics_armed_ = false;
  MappedImage image_;
  std::unique_ptr<SteppedMachine> runner_;
  bool vm_ended_ = false;
  int vm_status_ = 0;
  uint64_t start_ns_ = 0;
  // Firecracker's "latencies_us" metrics: the last of each operation, µs.
  std::map<std::string, uint64_t> latencies_us_;
  uint64_t snapshots_ = 0;
  struct Timed {  // records how long a scope took under `name`
    ApiVmm* vmm;
    const char* name;
    uint64_t t0 = monotonic_ns();
    ~Timed() { vmm->latencies_us_[name] = (monotonic_ns() - t0) / 1000; }
  };
};

Result<void> ApiVmm::watch(int fd, Tag tag) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return errno_error("epoll_ctl");
  return Ok();
}

Result<void> ApiVmm::setup() {
  // The signals that end ember-vmm are this loop's (the machine leaves them
  // alone: handle_signals = false). Blocked before any thread exists.
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&set, s);
  if (::pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) return Error{"pthread_sigmask failed"};
  ::signal(SIGPIPE, SIG_IGN);
  signal_fd_ = Fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd_.valid()) return errno_error("signalfd");
  epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) return errno_error("epoll_create1");
  EMBER_TRY_VOID(watch(signal_fd_.get(), kTagSignal));
  metrics_timer_ = Fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!metrics_timer_.valid()) return errno_error("timerfd_create");
  EMBER_TRY_VOID(watch(metrics_timer_.get(), kTagMetrics));

  if (!options_.api_sock.empty()) {
    ApiServerOptions so;
    so.socket_path = options_.api_sock;
    so.connection_limit = options_.api_max_connections;
    so.idle_timeout_s = options_.api_timeout_s;
    so.log = &log_;
    EMBER_TRY(server_, ApiServer::start(
                           so,
                           [this](std::string_view m, std::string_view p, std::string_view b) {
                             return handlers_.handle(m, p, b);
                           },
                           [this](int status, const std::string& msg) { return handlers_.error(status, msg); }));
    EMBER_TRY_VOID(watch(server_->fd(), kTagApi));
    log_.debug("API on %s ready after %.0f us", options_.api_sock.c_str(),
               static_cast<double>(monotonic_ns() - t0_) / 1000.0);
  }
  if (!options_.metrics_path.empty()) {
    const std::string body = nlohmann::json{{"metrics_path", options_.metrics_path}}.dump();
    HttpResponse r = handlers_.handle("PUT", "/metrics", body);
    if (r.status >= 400) return Error{"--metrics-path: " + nlohmann::json::parse(r.body, nullptr, false).value("fault_message", std::string("failed"))};
  }
  if (!options_.config_file.empty()) {
    EMBER_TRY(std::string text, read_small_file(options_.config_file, kMaxConfigFile));
    auto applied = handlers_.apply_config_file(text);
    if (!applied) return Error{options_.config_file + ": " + applied.message()};
    EMBER_TRY_VOID(controller_.instance_start());
  }
  return Ok();
}

MachineConfig ApiVmm::machine_config() const {
  MachineConfig mc;
  mc.verbose = options_.verbose;
  const char* trace = std::getenv("EMBER_TRACE");
  mc.trace = trace && *trace && std::strcmp(trace, "0") != 0;
  mc.t0_ns = t0_;
  mc.detach_teardown = false;  // at process exit instead (the API outlives the VM)
  mc.handle_signals = false;
  // The main thread's seccomp allow-list (seccomp/) covers `run`, not the API
  // server's syscalls (accept4, file I/O for snapshots and metrics); API mode
  // runs without the filters until there is a list for it.
  mc.seccomp = false;
  mc.allow_snapshots = true;  // PUT /snapshot/create whenever the VM is paused
  return mc;
}

Result<void> ApiVmm::run_vm(const MachineConfig& mc) {
  start_ns_ = monotonic_ns();
  EMBER_TRY(runner_, SteppedMachine::boot(mc));
  EMBER_TRY_VOID(watch(runner_->event_fd(), kTagMachine));
  return Ok();
}

Result<void> ApiVmm::start(const VmmConfig& config) {
  Timed t{this, "instance_start"};
  const BootSourceSpec& boot = *config.boot_source;
  MachineConfig mc = machine_config();
  if (boot.initrd_path) {
    EMBER_TRY(image_, map_image_file(*boot.initrd_path));
    mc.image = image_.data();
    mc.image_size = image_.size;
    mc.image_mapped = image_.mapping.size();
    mc.image_path = *boot.initrd_path;  // hard-linked into snapshots where possible
  }
  mc.kernel_path = boot.kernel_image_path;
  mc.mem_size = config.machine.mem_size_mib << 20;
  mc.cmdline = boot.boot_args.value_or("");
  if (config.vsock) {
    mc.vsock_uds = config.vsock->uds_path;
    mc.guest_cid = config.vsock->guest_cid;
  }
  return run_vm(mc);
}

Result<void> ApiVmm::pause() {
  Timed t{this, "pause_vm"};
  if (!runner_) return Error{"no VM"};
  runner_->pause();
  return Ok();
}

Result<void> ApiVmm::resume() {
  Timed t{this, "resume_vm"};
  if (!runner_) return Error{"no VM"};
  runner_->resume();
  return Ok();
}

Result<void> ApiVmm::create_snapshot(const SnapshotCreateSpec& spec) {
  Timed t{this, "full_create_snapshot"};
  if (!runner_) return Error{"no VM"};
  if (spec.type == SnapshotType::kDiff)
    return Error{"Diff snapshots are not supported yet: use Full (Ember's memory file is sparse: only pages the "
                 "guest wrote take space)"};
  SnapshotFilePaths paths{spec.snapshot_path, spec.mem_file_path, snapshot_image_path(spec.snapshot_path)};
  EMBER_TRY(uint64_t written, runner_->save_snapshot(paths));
  (void)written;
  snapshots_++;
  return Ok();
}

Result<void> ApiVmm::load_snapshot(const SnapshotLoadSpec& spec, VmmConfig* config) {
  Timed t{this, "load_snapshot"};
  const SnapshotFilePaths paths = snapshot_load_paths(spec.snapshot_path, spec.mem_file_path);
  MachineConfig mc = machine_config();
  mc.restore_dir = paths.state;
  mc.restore_mem_path = paths.mem;
  mc.restore_image_path = paths.image;
  mc.start_paused = true;  // the controller resumes it when resume_vm says so
  if (spec.vsock_uds_override) mc.vsock_uds = *spec.vsock_uds_override;
  EMBER_TRY_VOID(run_vm(mc));
  runner_->pause();  // returns once the vCPU is parked
  config->machine.mem_size_mib = runner_->mem_size() >> 20;
  config->machine.vcpu_count = 1;
  // The snapshot does not record the host side of vsock: without an
  // override the device has no host socket.
  if (spec.vsock_uds_override) config->vsock = VsockSpec{runner_->guest_cid(), *spec.vsock_uds_override};
  else config->vsock.reset();
  return Ok();
}

void ApiVmm::on_machine() {
  if (!runner_ || vm_ended_) return;
  if (!runner_->step()) return;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, runner_->event_fd(), nullptr);
  RunOutcome out = runner_->finish();
  vm_ended_ = true;
  vm_status_ = out.status;
  if (!out.error.empty()) print_line(out.error);
  log_.debug("the VM ended with status %d", out.status);
  controller_.on_vm_exit(out.status, out.error);
}

void ApiVmm::arm_metrics_timer() {
  if (metrics_armed_ || !handlers_.metrics_configured()) return;
  itimerspec its{};
  its.it_value.tv_sec = kMetricsPeriodS;
  its.it_interval.tv_sec = kMetricsPeriodS;
  if (::timerfd_settime(metrics_timer_.get(), 0, &its, nullptr) == 0) metrics_armed_ = true;
}

void ApiVmm::add_metrics(nlohmann::json& j) const {
  j["uptime_ms"] = (monotonic_ns() - t0_) / 1000000;
  j["snapshots_created"] = snapshots_;
  if (!latencies_us_.empty()) j["latencies_us"] = latencies_us_;
  if (server_) j["api_connections"] = server_->connections();
}

int ApiVmm::shutdown(int status) {
  if (handlers_.metrics_configured()) (void)handlers_.flush_metrics();
  server_.reset();  // closes every API connection and removes the socket
  if (runner_) {
    if (!vm_ended_) runner_->finish();
    // The VM's fds are closed by a helper after we exit (~15 ms saved);
    // no API socket is open any more, so the helper's copies keep none alive.
    if (!detach_teardown()) log_.debug("no teardown helper: tearing down in-process");
  }
  return status;
}

int ApiVmm::run() {
  if (auto r = setup(); !r) {
    print_line(r.message());
    return shutdown(kExitVmm);
  }
  arm_metrics_timer();
  for (;;) {
    if (!server_ && vm_ended_) return shutdown(vm_status_);  // --no-api: the VM was all there was
    epoll_event events[8];
    const int n = ::epoll_wait(epoll_.get(), events, 8, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      print_line(errno_error("epoll_wait").message);
      return shutdown(kExitVmm);
    }
    for (int i = 0; i < n; i++) {
      switch (events[i].data.u64) {
        case kTagSignal: {
          signalfd_siginfo si{};
          if (::read(signal_fd_.get(), &si, sizeof si) == sizeof si) {
            log_.debug("signal %u: exiting", si.ssi_signo);
            return shutdown(vm_ended_ ? vm_status_ : abi::exit_status_for_signal(si.ssi_signo));
          }
          break;
        }
        case kTagApi:
          server_->run();
          arm_metrics_timer();
          break;
        case kTagMachine:
          on_machine();
          break;
        case kTagMetrics: {
          uint64_t expirations;
          while (::read(metrics_timer_.get(), &expirations, sizeof expirations) > 0) {
          }
          if (auto r = handlers_.flush_metrics(); !r) log_.debug("metrics: %s", r.message().c_str());
          break;
        }
        default:
          break;
      }
    }
  }
}

}  // namespace

bool is_api_invocation(const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0] == "run" || argv[0] == "help") return false;
  for (const std::string& a : argv) {
    for (const char* opt : {"--api-sock", "--config-file", "--no-api"}) {
      const size_t len = std::strlen(opt);
      if (a.compare(0, len, opt) == 0 && (a.size() == len || a[len] == '=')) return true;
    }
  }
  return false;
}

std::string api_usage_text() {
  return "usage: ember-vmm --api-sock PATH [--id ID] [--config-file FILE] [OPTIONS]\n"
         "       ember-vmm --config-file FILE [--no-api] [OPTIONS]\n"
         "\n"
         "Serves the Firecracker-compatible VMM API (api/openapi-vmm.yaml) on the Unix\n"
         "socket PATH: configure with PUT /boot-source (kernel_image_path = ember-guest.elf,\n"
         "initrd_path = the function image), /machine-config, /vsock, then PUT /actions\n"
         "{\"action_type\": \"InstanceStart\"}. The program's stdin/stdout/stderr are\n"
         "ember-vmm's own. With --config-file the VM is configured from FILE (Firecracker's\n"
         "JSON shape: boot-source, machine-config, vsock, metrics) and started at once.\n"
         "\n"
         "options:\n"
         "  --api-sock PATH        serve the API on this Unix socket (a stale socket file\n"
         "                         is replaced; one in use is an error)\n"
         "  --id ID                the instance id GET / reports (letters, digits, '-',\n"
         "                         '_', 1..64; default anonymous-instance)\n"
         "  --config-file FILE     configure and start the VM from FILE\n"
         "  --no-api               no API socket (needs --config-file); ember-vmm exits\n"
         "                         with the program's status, as `ember-vmm run`\n"
         "  --metrics-path PATH    as PUT /metrics: JSON lines, one per FlushMetrics and\n"
         "                         every 60 s\n"
         "  --api-timeout-s N      close API connections idle for N s (default 5)\n"
         "  --api-max-connections N  at most N API connections at once (default 64;\n"
         "                         the rest wait)\n"
         "  --no-seccomp           accepted for compatibility (API mode installs no\n"
         "                         seccomp filter yet)\n"
         "  -v, --verbose          diagnostics on stderr\n"
         "  -h, --help             this text\n"
         "\n"
         "examples:\n"
         "  ember-vmm --api-sock /tmp/vm.sock --id fn-1\n"
         "  curl --unix-socket /tmp/vm.sock http://localhost/\n"
         "  ember-vmm --config-file vm.json --no-api < input.txt\n"
         "\n"
         "exit status: after SIGTERM/SIGINT, the program's status if it has ended, else\n"
         "128+signal; without an API the program's status; 125 VMM failure; 2 usage error.\n";
}

Result<ApiCliOptions> parse_api_cli(const std::vector<std::string>& argv) {
  ApiCliOptions o;
  for (size_t i = 0; i < argv.size(); i++) {
    const std::string& a = argv[i];
    CliOption opt(argv, &i, "`ember-vmm --api-sock PATH --help`");
    const std::string& name = opt.name();
    auto value = [&] { return opt.value(); };
    auto flag = [&] { return opt.flag(); };
    if (name == "-h" || name == "--help") {
      EMBER_TRY_VOID(flag());
      o.help = true;
      return o;
    } else if (name == "-v" || name == "--verbose") {
      EMBER_TRY_VOID(flag());
      o.verbose = true;
    } else if (name == "--api-sock") {
      EMBER_TRY(o.api_sock, value());
      if (o.api_sock.empty()) return Error{"--api-sock needs a path"};
    } else if (name == "--id") {
      EMBER_TRY(o.id, value());
      if (o.id.empty() || o.id.size() > 64) return Error{"--id must be 1 to 64 characters"};
      for (char c : o.id)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'))
          return Error{"--id " + o.id + ": only letters, digits, '-' and '_' are allowed"};
    } else if (name == "--config-file") {
      EMBER_TRY(o.config_file, value());
      if (o.config_file.empty()) return Error{"--config-file needs a path"};
    } else if (name == "--metrics-path") {
      EMBER_TRY(o.metrics_path, value());
      if (o.metrics_path.empty()) return Error{"--metrics-path needs a path"};
    } else if (name == "--no-api") {
      EMBER_TRY_VOID(flag());
      o.no_api = true;
    } else if (name == "--no-seccomp") {
      EMBER_TRY_VOID(flag());
      o.seccomp = false;
    } else if (name == "--api-timeout-s" || name == "--api-max-connections") {
      EMBER_TRY(auto v, value());
      uint64_t n;
      if (!parse_uint(v, 3600, &n) || n == 0) return Error{name + " " + v + ": must be a number from 1 to 3600"};
      (name == "--api-timeout-s" ? o.api_timeout_s : o.api_max_connections) = static_cast<unsigned>(n);
    } else {
      return Error{"unknown option '" + a + "' (see `ember-vmm --api-sock PATH --help`)"};
    }
  }
  if (o.no_api && !o.api_sock.empty()) return Error{"--no-api and --api-sock exclude each other"};
  if (o.no_api && o.config_file.empty()) return Error{"--no-api needs --config-file FILE (nothing could start the VM)"};
  if (o.api_sock.empty() && o.config_file.empty())
    return Error{"API mode needs --api-sock PATH or --config-file FILE (see `ember-vmm --help`)"};
  if (o.api_sock.empty()) o.no_api = true;
  return o;
}

int api_main(const ApiCliOptions& options, uint64_t t0_ns) {
  if (options.help) {
    std::fputs(api_usage_text().c_str(), stdout);
    return 0;
  }
  ApiVmm vmm(options, t0_ns);
  return vmm.run();
}

}  // namespace ember

#include "controller/controller.h"

#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "api/snapshot_files.h"
#include "api/stdio_protocol.h"
#include "base/self_path.h"
#include "controller/fsutil.h"
#include "controller/image_build.h"
#include "controller/system_limits.h"

namespace ember::controller {

using nlohmann::json;

namespace {

const std::vector<std::string> kChildEnv = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};

uint64_t us_since(Clock::time_point t0) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// FNV-1a, for the id prefix that marks this state dir's VMs.
uint32_t fnv1a(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

std::string hex(uint64_t v, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llx", width, static_cast<unsigned long long>(v));
  return buf;
}

// The last line of `text` that starts with `prefix` (or the last line).
std::string last_line(const std::string& text, const std::string& prefix = "") {
  std::string best;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && (prefix.empty() || line.compare(0, prefix.size(), prefix) == 0)) best = line;
    start = end + 1;
  }
  return best;
}

std::string tail_of_file(const std::string& path, size_t max = 4096) {
  auto r = read_file(path, 64 << 20);
  if (!r) return "";
  const std::string& s = *r;
  return s.size() > max ? s.substr(s.size() - max) : s;
}

// What a pipe holds now, without waiting for more (at most 64 KiB).
std::string read_available(int fd) {
  std::string text;
  char buf[4096];
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  for (ssize_t n; text.size() < 65536 && (n = ::read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  return text;
}

// ": " and the line that says why a VMM could not start (ember-jailer's, if
// it spoke), or "".
std::string last_words(const std::string& output) {
  std::string line = last_line(output, "ember-jailer: ");
  if (line.empty()) line = last_line(output);
  return line.empty() ? "" : ": " + line;
}

uint32_t percentile(std::vector<uint32_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t idx = static_cast<size_t>(p * static_cast<double>(v.size()) + 0.999999);
  if (idx == 0) idx = 1;
  if (idx > v.size()) idx = v.size();
  return v[idx - 1];
}

}  // namespace

void FunctionStats::add_latency(uint32_t us) {
  if (latency_us.size() < kLatencyRing) {
    latency_us.push_back(us);
  } else {
    latency_us[latency_next] = us;
  }
  latency_next = (latency_next + 1) % kLatencyRing;
}

FunctionVersion::~FunctionVersion() {
  if (!remove_files.load()) return;
  remove_tree(dir);
  // The name's directory goes too once no version and no record is left.
  const auto slash = dir.rfind('/');
  if (slash != std::string::npos) ::rmdir(dir.substr(0, slash).c_str());
}

Controller::Controller(Config cfg, Logger& log) : cfg_(std::move(cfg)), log_(log) {
  functions_dir_ = cfg_.state_dir + "/functions";
  run_dir_ = cfg_.state_dir + "/run";
  id_prefix_ = "e" + hex(fnv1a(cfg_.state_dir) & 0xffffff, 6);
}

Controller::~Controller() { shutdown(); }

// ---------------------------------------------------------------------------
// Start-up

Result<void> Controller::lock_state_dir() {
  EMBER_TRY_VOID(make_dirs(cfg_.state_dir, 0700));
  const std::string path = cfg_.state_dir + "/emberd.lock";
  state_lock_ = Fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!state_lock_.valid()) return errno_error("open " + path);
  if (::flock(state_lock_.get(), LOCK_EX | LOCK_NB) < 0) {
    if (errno == EWOULDBLOCK) return Error{"another emberd is using the state directory " + cfg_.state_dir};
    return errno_error("flock " + path);
  }
  return Ok();
}

Result<void> Controller::detect_vmm() {
  vmm_path_ = cfg_.vmm_binary.empty() ? self_dir() + "/ember-vmm" : cfg_.vmm_binary;
  if (::access(vmm_path_.c_str(), X_OK) != 0)
    return errno_error("the VMM " + vmm_path_ + " is not executable (set vmm_binary)");
  // The guest kernel every VM boots: a typo here would otherwise surface only
  // at the first deploy, as a VM that failed.
  const std::string kernel = cfg_.guest_kernel.empty()
                                 ? std::filesystem::path(vmm_path_).parent_path().string() + "/ember-guest.elf"
                                 : cfg_.guest_kernel;
  if (struct stat st {}; ::stat(kernel.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || ::access(kernel.c_str(), R_OK) != 0)
    return Error{"the guest kernel " + kernel + " is not a readable file (set guest_kernel)"};
  // What this ember-vmm can do: `restore` and `run --snapshot-at-ready`
  // make the snapshot mechanism possible.
  bool snapshots = false;
  auto help = run_command({vmm_path_, "--help"}, 5000, kChildEnv);
  auto run_help = run_command({vmm_path_, "run", "--help"}, 5000, kChildEnv);
  if (help && run_help)
    snapshots = help->output.find("restore") != std::string::npos &&
                run_help->output.find("--snapshot-at-ready") != std::string::npos;
  if (cfg_.mechanism == "snapshot" && !snapshots)
    return Error{"mechanism: snapshot, but " + vmm_path_ + " has no `restore` / `run --snapshot-at-ready`"};
  mechanism_ = (cfg_.mechanism == "boot" || !snapshots) ? Mechanism::kBoot : Mechanism::kSnapshot;

  jailer_path_ = cfg_.jailer.binary.empty() ? self_dir() + "/ember-jailer" : cfg_.jailer.binary;
  const bool root = ::geteuid() == 0;
  const bool have_jailer = ::access(jailer_path_.c_str(), X_OK) == 0;
  switch (cfg_.jailer.mode) {
    case JailerMode::kOff:
      jail_ = false;
      log_.warn("jailer.enabled is false: VMMs run unjailed, as emberd's own user");
      break;
    case JailerMode::kOn:
      if (!root) return Error{"jailer.enabled is true but emberd is not root (the jailer needs root)"};
      if (!have_jailer) return Error{"jailer.enabled is true but " + jailer_path_ + " is not executable"};
      jail_ = true;
      break;
    case JailerMode::kAuto:
      // Unjailed as root would hand every guest's VMM root on the host: a
      // missing jailer is an installation error, not a reason to go on.
      if (root && !have_jailer)
        return Error{"emberd runs as root but the jailer " + jailer_path_ + " is not executable: VMs would run "
                     "unjailed as root (install ember-jailer next to emberd, set jailer.binary, or set "
                     "jailer.enabled: false to run them unjailed on purpose)"};
      jail_ = root;
      if (!jail_) log_.warn("VMMs run unjailed: emberd is not root (the jailer needs root)");
      break;
  }
  cgroup_version_ = cfg_.jailer.cgroup_version ? cfg_.jailer.cgroup_version : detect_cgroup_version();
  return Ok();
}

void Controller::kill_orphans() {
  // VMMs (and jailers) of a previous emberd on this state dir carry our id
  // prefix in `--id`; nothing else does.
  const std::string mark = id_prefix_ + "-";
  std::vector<Fd> killed =
      kill_processes_with_id([&](const std::string& id) { return id.compare(0, mark.size(), mark) == 0; });
  if (!killed.empty()) {
    // A killed VMM takes a while to go (its VM's teardown): wait, so that
    // none is left once emberd serves.
    std::vector<pollfd> left;
    for (const Fd& f : killed) left.push_back(pollfd{f.get(), POLLIN, 0});
    const auto give_up = Clock::now() + std::chrono::seconds(10);
    while (!left.empty() && Clock::now() < give_up) {
      if (::poll(left.data(), left.size(), 100) < 0 && errno != EINTR) break;
      std::erase_if(left, [](const pollfd& p) { return p.revents != 0; });
    }
    log_.warn("killed %zu orphaned VMM process(es) of a previous emberd on %s%s", killed.size(), cfg_.state_dir.c_str(),
              left.empty() ? "" : " (some still exiting after 10 s)");
  }
  // Their run directories (and jails) go too.
  std::error_code ec;
  for (std::filesystem::directory_iterator it(run_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string id = it->path().filename().string();
    if (jail_ && path_exists(it->path().string() + "/jailed")) {
      auto r = jail_cleanup(id);
      if (!r || r->status.shell_code() != 0)
        log_.warn("ember-jailer --cleanup --id %s: %s", id.c_str(), r ? r->output.c_str() : r.message().c_str());
    }
    remove_tree(it->path().string());
  }
}

Result<std::shared_ptr<FunctionVersion>> Controller::open_version(const FunctionRecord& rec) {
  auto fn = std::make_shared<FunctionVersion>();
  fn->rec = rec;
  fn->dir = functions_dir_ + "/" + rec.name + "/v" + std::to_string(rec.version);
  fn->image_path = fn->dir + "/image.img";
  fn->snapshot_dir = fn->dir + "/snapshot";
  fn->stats = stats_for(rec.name);
  if (!path_exists(fn->image_path)) return Error{fn->image_path + " is missing"};
  if (rec.mechanism == Mechanism::kSnapshot && !path_exists(fn->snapshot_dir))
    return Error{fn->snapshot_dir + " is missing"};
  cap_pool(*fn);
  return fn;
}

void Controller::load_functions() {
  std::error_code ec;
  int loaded = 0;
  for (std::filesystem::directory_iterator it(functions_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const std::string dir = it->path().string();
    if (!valid_function_name(name)) {
      log_.warn("ignoring %s: not a function name", dir.c_str());
      continue;
    }
    const std::string record_path = dir + "/function.json";
    auto text = read_file(record_path, 1 << 20);
    if (!text) {
      // A deploy that never finished (or a delete): nothing to keep.
      log_.warn("removing %s: no function record (%s)", dir.c_str(), text.message().c_str());
      remove_tree(dir);
      continue;
    }
    json j = json::parse(*text, nullptr, false);
    auto rec = j.is_discarded() ? Result<FunctionRecord>(Error{"not JSON"}) : record_from_json(j, cfg_);
    if (!rec) {
      log_.error("cannot load function %s from %s: %s (left on disk)", name.c_str(), record_path.c_str(), rec.message().c_str());
      continue;
    }
    if (rec->mechanism == Mechanism::kSnapshot && mechanism_ != Mechanism::kSnapshot) {
      // The VMM lost snapshot support (or mechanism: boot): boot from the image instead.
      rec->mechanism = Mechanism::kBoot;
    }
    auto fn = open_version(*rec);
    if (!fn) {
      log_.error("cannot load function %s: %s (left on disk)", name.c_str(), fn.message().c_str());
      continue;
    }
    // Leftovers: other versions and temporary files of interrupted writes.
    const std::string keep = "v" + std::to_string(rec->version);
    for (std::filesystem::directory_iterator v(dir, ec), vend; !ec && v != vend; v.increment(ec)) {
      const std::string f = v->path().filename().string();
      if (f != keep && f != "function.json") remove_tree(v->path().string());
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      functions_[name] = *fn;
    }
    loaded++;
  }
  if (loaded) log_.info("loaded %d function(s) from %s", loaded, functions_dir_.c_str());
}

Result<void> Controller::start() {
  EMBER_TRY_VOID(lock_state_dir());
  {
    // VM ids are PREFIX-INSTANCE-N, INSTANCE counting emberd's starts on this
    // state dir: a VM id (and its jail, its cgroups) is never reused.
    const std::string path = cfg_.state_dir + "/emberd.instance";
    uint64_t n = 0;
    if (auto t = read_file(path, 64); t) n = std::strtoull(t->c_str(), nullptr, 10);
    n++;
    EMBER_TRY_VOID(write_file_atomic(path, std::to_string(n) + "\n", 0600));
    instance_ = std::to_string(n);
  }
  EMBER_TRY_VOID(make_dirs(functions_dir_, 0700));
  EMBER_TRY_VOID(make_dirs(run_dir_, 0711));
  EMBER_TRY_VOID(detect_vmm());
  const LimitReport lim = raise_and_check_limits(cfg_.limits.max_vms);
  for (const auto& w : lim.warnings) log_.warn("%s", w.c_str());
  budget_bytes_ = cfg_.limits.memory_budget_mib ? cfg_.limits.memory_budget_mib << 20 : lim.mem_total_bytes / 10 * 8;
  metrics_.memory_budget_bytes->Set(static_cast<double>(budget_bytes_));
  log_.info("VMs: %s mechanism, %s; RLIMIT_NOFILE %llu; memory budget %llu MiB", mechanism_name(mechanism_),
            jail_ ? "jailed" : "unjailed", static_cast<unsigned long long>(lim.nofile),
            static_cast<unsigned long long>(budget_bytes_ >> 20));
  if (jail_) admission_ = Admission(cfg_.jailer.uid, cfg_.jailer.uid_count);
  kill_orphans();
  refresh_capacity();
  load_functions();
  EMBER_TRY_VOID(reaper_.start());
  for (uint32_t i = 0; i < cfg_.refill_workers; i++) threads_.emplace_back([this] { refill_worker(); });
  threads_.emplace_back([this] { housekeeping(); });
  threads_.emplace_back([this] { janitor_run(); });
  started_ = true;
  std::vector<std::shared_ptr<FunctionVersion>> all;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [name, fn] : functions_) all.push_back(fn);
  }
  for (auto& fn : all) request_refill(fn);
  update_gauges();
  return Ok();
}

void Controller::shutdown() {
  if (!started_) return;
  started_ = false;
  {
    std::lock_guard<std::mutex> l(refill_mu_);
    stopping_ = true;
  }
  stop_flag_ = true;
  refill_cv_.notify_all();
  stop_cv_.notify_all();
  // Kill everything; the reaper sees each exit. Twice: a refill that was
  // starting a VM registers it after the first sweep.
  size_t stopped = 0;
  auto kill_all = [&] {
    std::vector<std::shared_ptr<Vm>> vms;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (auto& [id, vm] : vms_) vms.push_back(vm);
    }
    for (auto& vm : vms) vm->kill("emberd is shutting down");
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    for (auto& vm : vms) vm->kill_and_wait("emberd is shutting down", deadline);
    stopped += vms.size();
  };
  kill_all();
  {
    std::lock_guard<std::mutex> l(janitor_mu_);
  }
  janitor_cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
  kill_all();
  // Whatever the janitor did not get to.
  std::error_code ec;
  for (std::filesystem::directory_iterator it(run_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    if (jail_ && path_exists(it->path().string() + "/jailed"))
      (void)jail_cleanup(it->path().filename().string());
    remove_tree(it->path().string());
  }
  log_.info("stopped %zu VM(s)", stopped);
}

Result<RunResult> Controller::jail_cleanup(const std::string& id) {
  return run_command({jailer_path_, "--cleanup", "--id", id, "--chroot-base", cfg_.jailer.chroot_base}, 10000, kChildEnv);
}

JailSpec Controller::jail_spec(const std::string& id, const FunctionVersion& fn, uint32_t uid) {
  JailSpec j;
  j.jailer = jailer_path_;
  j.id = id;
  j.uid = uid;
  j.gid = cfg_.jailer.gid;
  j.chroot_base = cfg_.jailer.chroot_base;
  j.cgroup_version = cgroup_version_;
  j.memory_limit_bytes = (static_cast<uint64_t>(fn.rec.spec.memory_mib) + cfg_.jailer.memory_overhead_mib) << 20;
  j.cpu_quota_pct = cfg_.jailer.cpu_quota_pct;
  j.pids_max = cfg_.jailer.pids_max;
  j.no_file = cfg_.jailer.no_file;
  j.fsize_bytes = uint64_t{cfg_.jailer.log_max_mib} << 20;
  return j;
}

// ---------------------------------------------------------------------------
// Registry helpers

std::shared_ptr<FunctionVersion> Controller::current(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = functions_.find(name);
  return it == functions_.end() ? nullptr : it->second;
}

std::shared_ptr<FunctionStats> Controller::stats_for(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  auto& s = stats_[name];
  if (!s) s = std::make_shared<FunctionStats>();
  return s;
}

std::shared_ptr<std::mutex> Controller::deploy_lock(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  auto& m = deploy_locks_[name];
  if (!m) m = std::make_shared<std::mutex>();
  return m;
}

void Controller::forget_name(const std::string& name, const std::shared_ptr<std::mutex>& lock) {
  std::lock_guard<std::mutex> l(mu_);
  if (functions_.count(name)) return;
  stats_.erase(name);
  // Only when no other deploy or delete of the name holds or waits for the
  // lock (each gets it here, under mu_): erasing it then cannot let two of
  // them run at once.
  auto it = deploy_locks_.find(name);
  if (it != deploy_locks_.end() && it->second == lock && lock.use_count() == 2) deploy_locks_.erase(it);
}

std::string Controller::new_vm_id() {
  return id_prefix_ + "-" + instance_ + "-" + std::to_string(next_id_.fetch_add(1));
}

size_t Controller::vm_count() const {
  std::lock_guard<std::mutex> l(mu_);
  return vms_.size();
}

// ---------------------------------------------------------------------------
// VMs

namespace {

// A jailer that failed or was killed once it had started the VMM leaves the
// VMM running as our child with no pid on record: found by its --id, it is
// killed and reaped, never left to run unowned or to linger as a zombie.
void reap_stray_vmm(const std::string& id) {
  for (const Fd& pidfd : kill_processes_with_id([&](const std::string& x) { return x == id; }))
    (void)wait_process(pidfd.get());
}

}  // namespace

Result<void> Controller::spawn_vm(const std::shared_ptr<Vm>& vm, const std::vector<std::string>& vmm_argv, int in_fd,
                                  int out_fd, int err_fd) {
  SpawnOptions o;
  o.env = kChildEnv;
  o.stdin_fd = in_fd;
  o.stdout_fd = out_fd;
  o.stderr_fd = err_fd;
  Child c;
  if (jail_) {
    // ember-jailer --detach builds the jail, starts the VMM in it as our own
    // child and exits: no supervising process stays per VM (its memory, page
    // tables and task were ~10 % of what a parked VM costs the host), and we
    // own the VMM as we own an unjailed one.
    JailSpec j = jail_spec(vm->id, *vm->fn, vm->slot.uid());
    j.detach = true;
    o.argv = jailed_command(j, vmm_argv);
    vm->jailed = true;
    EMBER_TRY_VOID(write_file_atomic(vm->run_dir + "/jailed", vm->id));
    EMBER_TRY(Child jailer, spawn_process(o));
    auto st = wait_process_until(jailer.pidfd.get(), Clock::now() + std::chrono::milliseconds(cfg_.deploy_timeout_ms));
    if (!st) {
      signal_process(jailer.pidfd.get(), SIGKILL);
      (void)wait_process(jailer.pidfd.get());
      reap_stray_vmm(vm->id);
      return Error{"ember-jailer did not finish the jail within deploy_timeout_ms (" +
                   std::to_string(cfg_.deploy_timeout_ms) + " ms)"};
    }
    const pid_t pid = st->shell_code() == 0 ? detached_vmm_pid(cfg_.jailer.chroot_base, vm->id) : -1;
    if (pid < 0) {
      reap_stray_vmm(vm->id);
      if (st->shell_code() != 0) return Error{"ember-jailer " + st->describe()};
      return Error{"ember-jailer --detach left no VMM pid in the jail " + vm->id};
    }
    auto adopted = adopt_child(pid);
    if (!adopted) {
      discard_child(pid);
      return adopted.error();
    }
    c = std::move(*adopted);
  } else {
    o.argv = vmm_argv;
    EMBER_TRY(c, spawn_process(o));
  }
  vm->pid = c.pid;
  vm->pidfd = std::move(c.pidfd);
  register_vm(vm);
  // The callback owns the VM until it has exited (it keeps the pidfd open).
  auto keep = vm;
  if (auto w = reaper_.watch(vm->pidfd.get(), [this, keep](ExitStatus st) { on_vm_exit(keep, st); }); !w) {
    signal_process(vm->pidfd.get(), SIGKILL);
    (void)wait_process(vm->pidfd.get());
    unregister_vm(vm);
    return w.error();
  }
  return Ok();
}

Result<std::shared_ptr<Vm>> Controller::start_vm(const std::shared_ptr<FunctionVersion>& fn, Admission::Slot slot) {
  const auto t0 = Clock::now();
  auto vm = std::make_shared<Vm>();
  vm->slot = std::move(slot);
  vm->id = new_vm_id();
  vm->fn = fn;
  vm->run_dir = run_dir_ + "/" + vm->id;
  auto fail = [&](const std::string& what) -> Error {
    metrics_.vm_start_failures->Increment();
    janitor_add(vm->run_dir, vm->jailed ? vm->id : "");
    return Error{what};
  };
  if (auto r = make_dirs(vm->run_dir, 0711); !r) return fail(r.message());
  VmPaths paths;
  paths.vmm = vmm_path_;
  paths.kernel = cfg_.guest_kernel;
  paths.image = fn->image_path;
  paths.snapshot_dir = fn->snapshot_dir;
  if (fn->rec.mechanism == Mechanism::kBoot) {
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) < 0) return fail(errno_error("pipe").message);
    Fd in_r(in[0]), in_w(in[1]);
    if (::pipe2(out, O_CLOEXEC) < 0) return fail(errno_error("pipe").message);
    Fd out_r(out[0]), out_w(out[1]);
    if (::pipe2(err, O_CLOEXEC) < 0) return fail(errno_error("pipe").message);
    Fd err_r(err[0]), err_w(err[1]);
    auto s = spawn_vm(vm, boot_command(jail_ ? "" : vm->id, fn->rec.spec, paths), in_r.get(), out_w.get(), err_w.get());
    if (!s) {
      err_w.reset();
      return fail("cannot start ember-vmm: " + s.message() + last_words(read_available(err_r.get())));
    }
    vm->in = std::move(in_w);
    vm->out = std::move(out_r);
    vm->err = std::move(err_r);
    metrics_.lifecycle("boot").Observe(seconds_since(t0));
  } else {
    vm->log_path = vm->run_dir + "/vmm.log";
    paths.vsock_uds = vm->run_dir + "/v.sock";
    // Jailed, the VMM makes its socket in the jail's /run.
    vm->vsock_path = jail_ ? jail_run_path(cfg_.jailer.chroot_base, vm->id, "v.sock") : paths.vsock_uds;
    Fd log(::open(vm->log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!log.valid()) return fail(errno_error("create " + vm->log_path).message);
    vm->max_uses = cfg_.invocations_per_vm;
    auto s = spawn_vm(vm, restore_command(jail_ ? "" : vm->id, vm->max_uses, paths), -1, log.get(), log.get());
    if (!s) return fail("cannot start ember-vmm: " + s.message() + last_words(tail_of_file(vm->log_path)));
    // Parked at ready once its vsock socket accepts and the guest answers.
    const auto deadline = Clock::now() + std::chrono::milliseconds(cfg_.deploy_timeout_ms);
    std::string last;
    for (;;) {
      if (vm->exited()) {
        unregister_vm(vm);
        return fail("the VM exited before it was ready (" + vm->exit_status().describe() + "): " +
                    last_line(tail_of_file(vm->log_path)));
      }
      if (path_exists(vm->vsock_path)) {
        auto c = vsock_connect(vm->vsock_path, abi::kStdioPort, deadline, &vm->leftover);
        if (c) {
          vm->sock = std::move(*c);
          break;
        }
        last = c.message();
      }
      if (Clock::now() > deadline) {
        retire_vm(vm, "not ready in time");
        return fail("the VM was not ready after " + std::to_string(cfg_.deploy_timeout_ms) + " ms" +
                    (last.empty() ? "" : ": " + last));
      }
      ::usleep(200);
    }
    metrics_.lifecycle("restore").Observe(seconds_since(t0));
  }
  metrics_.vm_starts->Increment();
  vm->state = VmState::kReady;
  return vm;
}

void Controller::register_vm(const std::shared_ptr<Vm>& vm) {
  std::lock_guard<std::mutex> l(mu_);
  vms_[vm->id] = vm;
}

void Controller::unregister_vm(const std::shared_ptr<Vm>& vm) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = vms_.find(vm->id);
  if (it != vms_.end() && it->second == vm) vms_.erase(it);
}

void Controller::retire_vm(const std::shared_ptr<Vm>& vm, const std::string& reason) {
  vm->kill(reason);
  unregister_vm(vm);
}

void Controller::on_vm_exit(const std::shared_ptr<Vm>& vm, ExitStatus st) {
  const VmState was = vm->state.load();
  // The jail's cgroups go once the janitor gets to them: ask them now.
  const bool oom_killed = vm->jailed && st.signaled && st.value == SIGKILL &&
                          jail_oom_kills(cfg_.jailer.chroot_base, vm->id) > 0;
  vm->set_exited(st, vmm_death_verdict(st, oom_killed));
  bool was_parked = false;
  {
    std::lock_guard<std::mutex> l(vm->fn->mu);
    auto& q = vm->fn->ready;
    auto it = std::find(q.begin(), q.end(), vm);
    if (it != q.end()) {
      q.erase(it);
      was_parked = true;
    }
  }
  if (!vm->stop_requested.load() && (was == VmState::kReady || was == VmState::kStarting)) {
    metrics_.vm_deaths->Increment();
    // Why: what killed it, or the VMM's last words (its log or stderr pipe).
    std::string why = vm->death_verdict();
    if (why.empty() && !vm->log_path.empty()) why = last_line(tail_of_file(vm->log_path));
    if (why.empty() && vm->err.valid()) why = last_line(read_available(vm->err.get()));
    log_.warn("VM %s (%s v%llu, pid %d) %s while %s%s%s", vm->id.c_str(), vm->fn->rec.name.c_str(),
              static_cast<unsigned long long>(vm->fn->rec.version), vm->pid, st.describe().c_str(), vm_state_name(was),
              why.empty() ? "" : ": ", why.c_str());
  } else if (!vm->stop_requested.load() && was == VmState::kBusy && st.signaled) {
    metrics_.vm_deaths->Increment();
  }
  // Its process is gone: its room on the host (and its uid) is free.
  vm->slot.release();
  unregister_vm(vm);
  note_slot_event();
  // A parked VM was nobody's: close our ends now, a dead VM's pipes and
  // socket have nothing more to say. Any other is held by an invocation, a
  // refill or a recycle that may be polling those very fds (its state reads
  // kStopping once DELETE or a timeout killed it): the holder lets go of them.
  if (was_parked) {
    vm->in.reset();
    vm->out.reset();
    vm->err.reset();
    vm->sock.reset();
  }
  janitor_add(vm->run_dir, vm->jailed ? vm->id : "");
  if (was_parked) request_refill(vm->fn);
}

std::shared_ptr<Vm> Controller::take_ready(const std::shared_ptr<FunctionVersion>& fn) {
  std::lock_guard<std::mutex> l(fn->mu);
  // The most recently parked first: the VMs at the front then stay idle
  // and the pool's extras can age out (trim_idle_extras).
  while (!fn->ready.empty()) {
    auto vm = std::move(fn->ready.back());
    fn->ready.pop_back();
    if (vm->exited()) continue;
    vm->state = VmState::kBusy;
    return vm;
  }
  return nullptr;
}

void Controller::drain(const std::shared_ptr<FunctionVersion>& fn, const std::string& reason) {
  std::deque<std::shared_ptr<Vm>> vms;
  {
    std::lock_guard<std::mutex> l(fn->mu);
    fn->retired = true;
    vms.swap(fn->ready);
  }
  for (auto& vm : vms) retire_vm(vm, reason);
}

std::string Controller::vmm_failure_text(const std::shared_ptr<Vm>& vm, const std::string& captured_err) {
  std::string line = vm->death_verdict();
  if (line.empty()) line = last_line(captured_err, "ember-vmm: ");
  if (line.empty() && !vm->log_path.empty()) line = last_line(tail_of_file(vm->log_path));
  return line;
}

VmCost Controller::vm_cost(const FunctionVersion& fn) const {
  return {static_cast<int64_t>(fn.mem_estimate.load()), tasks_per_vm_.load()};
}

void Controller::refresh_capacity() {
  Capacity c;
  c.max_vms = cfg_.limits.max_vms;
  c.mem_bytes = static_cast<int64_t>(budget_bytes_);
  c.host_overhead_bytes = int64_t{cfg_.limits.vm_host_overhead_kib} << 10;
  c.tasks = tasks_for_vms(read_task_limits(!jail_), admission_.usage().tasks, cfg_.limits.host_task_reserve, &c.tasks_limit);
  admission_.set_capacity(std::move(c));
}

void Controller::cap_pool(FunctionVersion& fn) {
  const uint64_t most = admission_.most_vms(vm_cost(fn));
  fn.pool_size = static_cast<uint32_t>(std::min<uint64_t>(fn.rec.spec.pool, most));
  if (fn.pool_size < fn.rec.spec.pool)
    log_.warn("%s v%llu: pool of %u capped at %u, as many VMs as the host can hold (limits.max_vms, the memory "
              "budget, the task limit %s, jailer.uid_count)",
              fn.rec.name.c_str(), static_cast<unsigned long long>(fn.rec.version), fn.rec.spec.pool, fn.pool_size,
              admission_.capacity().tasks_limit.c_str());
}

std::optional<Admission::Slot> Controller::admit_vm(const std::shared_ptr<FunctionVersion>& fn, bool for_invocation,
                                                    std::string* why) {
  const VmCost cost = vm_cost(*fn);
  if (!for_invocation) return admission_.reserve(cost, why);
  // Shrink pools before refusing work: stop a parked VM and wait for its
  // exit to free its room (its process holds it until then). With nothing
  // parked, VMs in transit (being reset after an invocation, or booting for
  // a pool) park within milliseconds: wait for one, briefly.
  // One VM stopped per caller: each waiting caller makes its own room.
  auto give_up_at = Clock::now() + std::chrono::milliseconds(100);
  bool shrunk = false;
  for (;;) {
    const uint64_t seen = slot_events();
    if (auto slot = admission_.reserve(cost, why)) return slot;
    if (Clock::now() >= give_up_at) return std::nullopt;
    if (!shrunk && shrink_a_pool()) {
      shrunk = true;
      give_up_at = std::max(give_up_at, Clock::now() + std::chrono::seconds(2));
    } else if (!shrunk && !vms_in_transit()) {
      return std::nullopt;
    }
    std::unique_lock<std::mutex> l(slot_mu_);
    slot_cv_.wait_until(l, give_up_at, [&] { return slot_events_ != seen; });
  }
}

bool Controller::shrink_a_pool() {
  for (;;) {
    std::shared_ptr<FunctionVersion> victim;
    size_t most = 0;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (auto& [name, f] : functions_) {
        std::lock_guard<std::mutex> fl(f->mu);
        if (f->ready.size() > most) most = f->ready.size(), victim = f;
      }
    }
    if (!victim) return false;
    std::shared_ptr<Vm> vm;
    {
      std::lock_guard<std::mutex> fl(victim->mu);
      if (victim->ready.empty()) continue;
      vm = std::move(victim->ready.back());
      victim->ready.pop_back();
      victim->memory_limited = true;
    }
    retire_vm(vm, "pool shrunk to make room");
    return true;
  }
}

bool Controller::vms_in_transit() const {
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [id, vm] : vms_)
    if (vm->state.load() == VmState::kStarting) return true;
  return false;
}

uint64_t Controller::slot_events() {
  std::lock_guard<std::mutex> l(slot_mu_);
  return slot_events_;
}

void Controller::note_slot_event() {
  {
    std::lock_guard<std::mutex> l(slot_mu_);
    slot_events_++;
  }
  slot_cv_.notify_all();
}

// ---------------------------------------------------------------------------
// Pools

void Controller::request_refill(const std::shared_ptr<FunctionVersion>& fn) {
  {
    std::lock_guard<std::mutex> l(fn->mu);
    if (fn->retired || fn->refill_queued) return;
    if (fn->ready.size() + fn->starting >= fn->pool_size) return;
    if (fn->failures && Clock::now() < fn->retry_at) return;
    fn->refill_queued = true;
  }
  {
    std::lock_guard<std::mutex> l(refill_mu_);
    refill_queue_.push_back(fn);
  }
  refill_cv_.notify_one();
}

void Controller::post_task(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> l(refill_mu_);
    tasks_.push_back(std::move(task));
  }
  refill_cv_.notify_one();
}

void Controller::recycle(const std::shared_ptr<Vm>& vm, Clock::time_point exited_at, uint32_t others_inflight) {
  auto& fn = vm->fn;
  // The VMM resets the VM after the exit frame; a connection that arrives
  // before the guest listens again may be refused: try for a while.
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  auto c = vsock_connect(vm->vsock_path, abi::kStdioPort, deadline, &vm->leftover);
  for (int attempt = 0; !c && !vm->exited() && Clock::now() < deadline && attempt < 200; attempt++) {
    ::usleep(attempt < 10 ? 100 : 2000);
    c = vsock_connect(vm->vsock_path, abi::kStdioPort, deadline, &vm->leftover);
  }
  std::unique_lock<std::mutex> l(fn->mu);
  fn->starting--;
  // A VM beyond the pool size (started on a pool miss) stays while more of
  // the function's invocations were in flight, when this one ended, than VMs
  // are parked: under concurrent load the next request takes it, and a reset
  // costs ~0.1 ms where a new VM costs milliseconds and its teardown more.
  // Otherwise, or once idle for idle_vm_ms (trim_idle_extras), it goes.
  const bool full = fn->ready.size() + fn->starting >= fn->pool_size && fn->ready.size() >= others_inflight;
  if (!c || fn->retired || full || vm->exited() || vm->stop_requested.load()) {
    if (!c && !vm->exited()) log_.warn("VM %s: no reconnect after its reset: %s", vm->id.c_str(), c.message().c_str());
    l.unlock();
    retire_vm(vm, !c ? "no reconnect after reset" : full ? "pool full" : "function replaced");
    request_refill(fn);
    return;
  }
  vm->sock = std::move(*c);
  metrics_.lifecycle("reset").Observe(seconds_since(exited_at));
  vm->state = VmState::kReady;
  vm->parked_at = Clock::now();
  fn->ready.push_back(vm);
  l.unlock();
  note_slot_event();
}

void Controller::trim_idle_extras(const std::shared_ptr<FunctionVersion>& fn) {
  const auto idle_since = Clock::now() - std::chrono::milliseconds(cfg_.idle_vm_ms);
  std::vector<std::shared_ptr<Vm>> extras;
  {
    std::lock_guard<std::mutex> l(fn->mu);
    while (fn->ready.size() > fn->pool_size && fn->ready.front()->parked_at <= idle_since) {
      extras.push_back(std::move(fn->ready.front()));
      fn->ready.pop_front();
    }
  }
  for (auto& vm : extras) retire_vm(vm, "idle beyond the pool size");
}

void Controller::refill_worker() {
  for (;;) {
    std::shared_ptr<FunctionVersion> fn;
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> l(refill_mu_);
      refill_cv_.wait(l, [&] { return stopping_ || !refill_queue_.empty() || !tasks_.empty(); });
      if (stopping_) return;
      if (!tasks_.empty()) {
        task = std::move(tasks_.front());
        tasks_.pop_front();
      } else {
        fn = std::move(refill_queue_.front());
        refill_queue_.pop_front();
      }
    }
    if (task) {
      task();
      continue;
    }
    refill(fn);
  }
}

void Controller::refill(const std::shared_ptr<FunctionVersion>& fn) {
  for (;;) {
    if (stop_flag_.load()) break;
    {
      std::lock_guard<std::mutex> l(fn->mu);
      if (fn->retired || fn->ready.size() + fn->starting >= fn->pool_size) {
        fn->memory_limited = false;
        break;
      }
    }
    std::string why;
    auto slot = admit_vm(fn, false, &why);
    if (!slot) {
      std::lock_guard<std::mutex> l(fn->mu);
      if (!fn->memory_limited) log_.info("pool of %s stays short: %s", fn->rec.name.c_str(), why.c_str());
      fn->memory_limited = true;
      break;
    }
    {
      std::lock_guard<std::mutex> l(fn->mu);
      fn->starting++;
    }
    auto vm = start_vm(fn, std::move(*slot));
    std::unique_lock<std::mutex> l(fn->mu);
    fn->starting--;
    if (!vm) {
      fn->failures++;
      fn->last_error = vm.message();
      // 0.25 s, 0.5 s, ... up to 30 s between attempts.
      const auto backoff = std::chrono::milliseconds(std::min<uint64_t>(30000, 250ull << std::min<uint32_t>(fn->failures - 1, 7)));
      fn->retry_at = Clock::now() + backoff;
      log_.error("cannot start a VM for %s (attempt %u): %s", fn->rec.name.c_str(), fn->failures, vm.message().c_str());
      break;
    }
    fn->failures = 0;
    fn->last_error.clear();
    if (fn->retired) {
      l.unlock();  // retire_vm takes mu_, which is taken before fn->mu (shrink_a_pool)
      retire_vm(*vm, "function replaced");
      break;
    }
    (*vm)->state = VmState::kReady;
    (*vm)->parked_at = Clock::now();
    fn->ready.push_back(std::move(*vm));
    l.unlock();
    note_slot_event();
  }
  std::lock_guard<std::mutex> l(fn->mu);
  fn->refill_queued = false;
}

void Controller::housekeeping() {
  for (;;) {
    {
      std::unique_lock<std::mutex> l(refill_mu_);
      stop_cv_.wait_for(l, std::chrono::seconds(1), [&] { return stopping_; });
      if (stopping_) return;
    }
    // Memory of every VMM (private resident pages: what each VM costs).
    std::vector<std::shared_ptr<Vm>> vms;
    {
      std::lock_guard<std::mutex> l(mu_);
      vms.reserve(vms_.size());
      for (auto& [id, vm] : vms_) vms.push_back(vm);
    }
    std::map<FunctionVersion*, std::pair<uint64_t, uint64_t>> parked;  // sum, count
    int64_t most_threads = 0;
    for (auto& vm : vms) {
      uint64_t rss = 0, priv = 0;
      if (vm->exited() || !read_process_memory(vm->pid, &rss, &priv)) continue;
      admission_.update_memory(vm->slot, static_cast<int64_t>(priv));
      if (vm->state.load() == VmState::kReady) {
        auto& p = parked[vm->fn.get()];
        p.first += priv;
        p.second++;
        most_threads = std::max<int64_t>(most_threads, read_process_threads(vm->pid));
      }
    }
    if (most_threads > 0) tasks_per_vm_ = std::max<int64_t>(tasks_per_vm_.load(), most_threads + 2);
    refresh_capacity();
    std::vector<std::shared_ptr<FunctionVersion>> fns;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (auto& [name, fn] : functions_) fns.push_back(fn);
    }
    for (auto& fn : fns) {
      auto it = parked.find(fn.get());
      if (it != parked.end() && it->second.second) fn->mem_estimate = std::max<uint64_t>(it->second.first / it->second.second, 64 << 10);
      request_refill(fn);  // pools that are short (failures past their back-off, memory freed)
      trim_idle_extras(fn);
    }
    update_gauges();
  }
}

void Controller::janitor_add(std::string run_dir, std::string jail_id) {
  {
    std::lock_guard<std::mutex> l(janitor_mu_);
    janitor_queue_.emplace_back(std::move(run_dir), std::move(jail_id));
  }
  janitor_cv_.notify_one();
}

void Controller::janitor_run() {
  for (;;) {
    std::pair<std::string, std::string> job;
    {
      std::unique_lock<std::mutex> l(janitor_mu_);
      janitor_cv_.wait(l, [&] { return stop_flag_.load() || !janitor_queue_.empty(); });
      if (janitor_queue_.empty()) return;
      job = std::move(janitor_queue_.front());
      janitor_queue_.pop_front();
    }
    if (!job.second.empty()) {
      auto r = jail_cleanup(job.second);
      if (!r || r->status.shell_code() != 0)
        log_.warn("ember-jailer --cleanup --id %s: %s", job.second.c_str(), r ? r->output.c_str() : r.message().c_str());
    }
    remove_tree(job.first);
  }
}

void Controller::update_gauges() {
  size_t starting = 0, ready = 0, busy = 0;
  std::vector<std::shared_ptr<FunctionVersion>> fns;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [id, vm] : vms_) {
      switch (vm->state.load()) {
        case VmState::kStarting: starting++; break;
        case VmState::kReady: ready++; break;
        case VmState::kBusy:
        case VmState::kStopping: busy++; break;
      }
    }
    for (auto& [name, fn] : functions_) fns.push_back(fn);
    metrics_.functions->Set(static_cast<double>(functions_.size()));
  }
  metrics_.vms("starting").Set(static_cast<double>(starting));
  metrics_.vms("ready").Set(static_cast<double>(ready));
  metrics_.vms("busy").Set(static_cast<double>(busy));
  metrics_.vm_memory_bytes->Set(static_cast<double>(vm_memory_bytes()));
  metrics_.inflight->Set(inflight_.load());
  for (auto& fn : fns) {
    std::lock_guard<std::mutex> l(fn->mu);
    metrics_.set_pool(fn->rec.name, static_cast<double>(fn->ready.size()), fn->pool_size);
  }
}

// ---------------------------------------------------------------------------
// Deploy

Result<void> Controller::take_template(const std::shared_ptr<FunctionVersion>& fn, const Admission::Slot& slot,
                                       std::string* user_error) {
  // Boot the image, let the program run its start-up until it first reads
  // stdin, snapshot there (ember-vmm run --snapshot-at-ready). The program
  // is untrusted from its first instruction: jailed like every VM, its
  // snapshot is written to the jail's /run and copied out from there.
  const auto t0 = Clock::now();
  const std::string id = new_vm_id();
  VmPaths p;
  p.vmm = vmm_path_;
  p.kernel = cfg_.guest_kernel;
  p.image = fn->image_path;
  p.snapshot_dir = fn->snapshot_dir;
  std::vector<std::string> argv = template_command(jail_ ? "" : id, fn->rec.spec, p);
  const std::string run_dir = run_dir_ + "/" + id;  // marks the jail for a restart's orphan cleanup
  if (jail_) {
    JailSpec j = jail_spec(id, *fn, slot.uid());
    // The snapshot it writes: at most the guest's memory, and the image.
    j.fsize_bytes += (uint64_t{fn->rec.spec.memory_mib} << 20) + fn->rec.image_bytes;
    argv = jailed_command(j, argv);
    if (auto m = make_dirs(run_dir, 0711); !m) return m.error();
    if (auto w = write_file_atomic(run_dir + "/jailed", id); !w) return w.error();
  }
  auto r = run_command(argv, cfg_.deploy_timeout_ms, kChildEnv);
  if (jail_) {
    Result<void> out = Ok();
    if (r && !r->timed_out && r->status.shell_code() == 0) {
      // vm.mem is at most the guest's memory; vm.img is the image.
      struct stat img {};
      (void)::stat(fn->image_path.c_str(), &img);
      const uint64_t cap = (static_cast<uint64_t>(fn->rec.spec.memory_mib) << 20) + static_cast<uint64_t>(img.st_size) +
                           (64ull << 20);
      const std::string made = jail_run_path(cfg_.jailer.chroot_base, id, std::filesystem::path(fn->snapshot_dir).filename());
      out = copy_untrusted_files(made, fn->snapshot_dir, {kVmstateFile, kMemFile, kImageFile}, cap);
    }
    janitor_add(run_dir, id);  // the jail goes, whatever happened in it
    if (!out) {
      *user_error = "the template snapshot could not be taken out of its jail: " + out.message();
      return Error{*user_error};
    }
  }
  if (!r) return r.error();
  if (r->timed_out) {
    *user_error = "the program did not read stdin within " + std::to_string(cfg_.deploy_timeout_ms) +
                  " ms of booting (deploy_timeout_ms), so no template snapshot could be taken";
    return Error{*user_error};
  }
  if (r->status.shell_code() != 0 || !path_exists(fn->snapshot_dir)) {
    // The program's doing (a 422): it ended before reading stdin, or its
    // start-up outgrew the jail's memory limit. The host's (a 500): the jail
    // could not be built (ember-jailer speaks), the VM or VMM failed. Only
    // stderr says which: the program's output is all on stdout
    // (--program-stderr-on-stdout), so it cannot pose as either.
    const std::string jailer_line = last_line(r->errors, "ember-jailer: ");
    const std::string vmm_line = last_line(r->errors, "ember-vmm: ");
    const std::string line = jailer_line.empty() ? vmm_line : jailer_line;
    const bool ended_early = jailer_line.empty() && (r->status.shell_code() != 125 ||
                                                     vmm_line.find(std::string("ember-vmm: ") + kNoSnapshotPrefix) == 0);
    const bool out_of_memory = jailer_line.find("memory limit") != std::string::npos;
    const std::string what = "the template boot " + r->status.describe() +
                             " instead of pausing at the program's first read of stdin" + (line.empty() ? "" : ": " + line);
    if (!ended_early && !out_of_memory) return Error{what};
    *user_error = what + (ended_early ? " (a function must read its request from stdin)" : "");
    return Error{*user_error};
  }
  fn->rec.template_us = us_since(t0);
  fn->rec.snapshot_bytes = disk_usage(fn->snapshot_dir);
  metrics_.lifecycle("template").Observe(seconds_since(t0));
  return Ok();
}

ApiResult Controller::deploy(const std::string& name, const std::string& body, const FunctionSpec& spec) {
  auto lock = deploy_lock(name);
  std::lock_guard<std::mutex> dl(*lock);
  auto old = current(name);
  auto fail = [&](int status, const std::string& msg) {
    metrics_.deploy_failures->Increment();
    if (!old) forget_name(name, lock);  // no per-name state left behind by names that never deployed
    log_.info("deploy %s failed: %s", name.c_str(), msg.c_str());
    ApiResult r;
    r.status = status;
    r.error = msg;
    if (status == 429) r.retry_after_s = 1;
    return r;
  };
  if (!old) {
    std::lock_guard<std::mutex> l(mu_);
    if (functions_.size() >= cfg_.limits.max_functions)
      return fail(429, "limits.max_functions (" + std::to_string(cfg_.limits.max_functions) + ") functions are deployed");
  }
  // The next version number: above the current one and anything on disk.
  uint64_t version = old ? old->rec.version + 1 : 1;
  const std::string name_dir = functions_dir_ + "/" + name;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(name_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string f = it->path().filename().string();
    if (f.size() > 1 && f[0] == 'v') version = std::max<uint64_t>(version, std::strtoull(f.c_str() + 1, nullptr, 10) + 1);
  }
  auto fn = std::make_shared<FunctionVersion>();
  fn->rec.name = name;
  fn->rec.version = version;
  fn->rec.spec = spec;
  fn->rec.mechanism = mechanism_;
  fn->rec.created_at = rfc3339_now();
  fn->dir = name_dir + "/v" + std::to_string(version);
  fn->image_path = fn->dir + "/image.img";
  fn->snapshot_dir = fn->dir + "/snapshot";
  fn->stats = stats_for(name);
  if (auto r = make_dirs(fn->dir, 0711); !r) return fail(500, r.message());
  fn->remove_files = true;  // until the deploy has succeeded
  auto built = build_function_image(name, body, spec, fn->dir + "/build", fn->image_path);
  if (!built) return fail(400, built.message());
  fn->rec.source = built->source;
  fn->rec.image_bytes = built->bytes;
  if (fn->rec.mechanism == Mechanism::kSnapshot) {
    // The template boot is a VM like any other: it needs room on the host.
    std::string why, user_error;
    auto slot = admit_vm(fn, true, &why);
    if (!slot) return fail(429, "no room for the template VM: " + why);
    if (auto t = take_template(fn, *slot, &user_error); !t) return fail(user_error.empty() ? 500 : 422, t.message());
  }
  cap_pool(*fn);
  // One VM before the switch: a function whose VMs cannot start is refused
  // here, not at its first invocation.
  std::shared_ptr<Vm> first;
  if (fn->pool_size > 0) {
    std::string why;
    if (auto slot = admit_vm(fn, true, &why)) {
      auto vm = start_vm(fn, std::move(*slot));
      if (!vm) return fail(422, "the function's first VM did not start: " + vm.message());
      first = *vm;
    }
  }
  // Persist, then switch: a crash before the rename keeps the old version.
  // (The image and snapshot files and their directories' entries were
  // fsynced as they were written; a first deploy's NAME directory entry
  // in functions/ is made durable here, or a crash could lose the function.)
  auto persisted = write_file_atomic(name_dir + "/function.json", record_to_json(fn->rec).dump(2) + "\n");
  if (persisted && !old) persisted = fsync_path(functions_dir_);
  if (!persisted) {
    if (first) retire_vm(first, "deploy failed");
    return fail(500, persisted.message());
  }
  fn->remove_files = false;
  if (first) {
    std::lock_guard<std::mutex> l(fn->mu);
    first->parked_at = Clock::now();
    fn->ready.push_back(first);
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    functions_[name] = fn;
  }
  if (old) {
    // In-flight invocations finish on the old version; its files go with its last reference.
    drain(old, "function redeployed");
    old->remove_files = true;
  }
  metrics_.deploys->Increment();
  log_.info("deployed %s v%llu (%s, %s mechanism, image %llu bytes%s)", name.c_str(),
            static_cast<unsigned long long>(version), fn->rec.source.c_str(), mechanism_name(fn->rec.mechanism),
            static_cast<unsigned long long>(fn->rec.image_bytes),
            fn->rec.mechanism == Mechanism::kSnapshot
                ? (", snapshot " + std::to_string(fn->rec.snapshot_bytes) + " bytes in " + std::to_string(fn->rec.template_us / 1000) + " ms").c_str()
                : "");
  // Fill the pool, then answer (bounded by deploy_timeout_ms).
  request_refill(fn);
  const auto deadline = Clock::now() + std::chrono::milliseconds(cfg_.deploy_timeout_ms);
  for (;;) {
    {
      std::lock_guard<std::mutex> l(fn->mu);
      if (fn->ready.size() >= fn->pool_size || fn->failures > 0 || fn->memory_limited) break;
    }
    if (Clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  update_gauges();
  ApiResult r;
  r.status = 201;
  r.body = describe_json(fn);
  return r;
}

ApiResult Controller::remove(const std::string& name) {
  auto lock = deploy_lock(name);
  std::lock_guard<std::mutex> dl(*lock);
  std::shared_ptr<FunctionVersion> fn;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = functions_.find(name);
    if (it == functions_.end()) return ApiResult{404, "no function named '" + name + "'", {}, 0};
    fn = it->second;
    functions_.erase(it);
  }
  // The record first: after a crash from here on, the function stays deleted.
  ::unlink((functions_dir_ + "/" + name + "/function.json").c_str());
  (void)fsync_path(functions_dir_ + "/" + name);
  drain(fn, "function deleted");
  fn->remove_files = true;
  metrics_.remove_function(name);
  forget_name(name, lock);  // a function deployed again under this name starts its counts afresh
  log_.info("deleted %s", name.c_str());
  update_gauges();
  return ApiResult{204, "", {}, 0};
}

// ---------------------------------------------------------------------------
// Reading

json Controller::describe_json(const std::shared_ptr<FunctionVersion>& fn) {
  json j = record_to_json(fn->rec);
  {
    std::lock_guard<std::mutex> l(fn->mu);
    j["pool"] = {{"target", fn->pool_size},
                 {"requested", fn->rec.spec.pool},
                 {"ready", fn->ready.size()},
                 {"starting", fn->starting},
                 {"memory_limited", fn->memory_limited},
                 {"last_error", fn->last_error}};
  }
  auto& s = *fn->stats;
  std::vector<uint32_t> lat;
  {
    std::lock_guard<std::mutex> l(s.mu);
    j["invocations"] = {{"total", s.ok + s.error + s.timeout + s.vm_error + s.rejected},
                        {"ok", s.ok},
                        {"error", s.error},
                        {"timeout", s.timeout},
                        {"vm_error", s.vm_error},
                        {"rejected", s.rejected},
                        {"pool_hits", s.pool_hits},
                        {"pool_misses", s.pool_misses},
                        {"inflight", s.inflight.load()}};
    lat = s.latency_us;
  }
  j["latency_us"] = {{"samples", lat.size()},
                     {"p50", percentile(lat, 0.50)},
                     {"p90", percentile(lat, 0.90)},
                     {"p99", percentile(lat, 0.99)},
                     {"max", lat.empty() ? 0u : *std::max_element(lat.begin(), lat.end())}};
  return j;
}

ApiResult Controller::describe(const std::string& name) {
  auto fn = current(name);
  if (!fn) return ApiResult{404, "no function named '" + name + "'", {}, 0};
  return ApiResult{200, "", describe_json(fn), 0};
}

ApiResult Controller::list_functions() {
  std::vector<std::shared_ptr<FunctionVersion>> fns;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [name, fn] : functions_) fns.push_back(fn);
  }
  json arr = json::array();
  for (auto& fn : fns) arr.push_back(describe_json(fn));
  return ApiResult{200, "", arr, 0};
}

ApiResult Controller::list_vms() {
  std::vector<std::shared_ptr<Vm>> vms;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [id, vm] : vms_) vms.push_back(vm);
  }
  json arr = json::array();
  const auto now = Clock::now();
  for (auto& vm : vms) {
    // Read now, not housekeeping's sample for the budget (up to a second
    // old, and only an estimate for a VM started since); 0 once it exited.
    uint64_t rss = 0, priv = 0;
    if (!vm->exited()) read_process_memory(vm->pid, &rss, &priv);
    arr.push_back({{"id", vm->id},
                   {"function", vm->fn->rec.name},
                   {"version", vm->fn->rec.version},
                   {"state", vm_state_name(vm->state.load())},
                   {"pid", vm->pid},
                   {"rss_bytes", rss},
                   {"private_bytes", priv},
                   {"age_ms", std::chrono::duration_cast<std::chrono::milliseconds>(now - vm->created).count()},
                   {"jailed", vm->jailed}});
  }
  return ApiResult{200, "", arr, 0};
}

ApiResult Controller::delete_vm(const std::string& id) {
  std::shared_ptr<Vm> vm;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = vms_.find(id);
    if (it == vms_.end()) return ApiResult{404, "no VM with id '" + id + "'", {}, 0};
    vm = it->second;
  }
  {
    std::lock_guard<std::mutex> l(vm->fn->mu);
    auto& q = vm->fn->ready;
    q.erase(std::remove(q.begin(), q.end(), vm), q.end());
  }
  vm->kill_and_wait("deleted by DELETE /v1/vms/" + id, Clock::now() + std::chrono::seconds(5));
  retire_vm(vm, "deleted");
  request_refill(vm->fn);
  return ApiResult{204, "", {}, 0};
}

std::string Controller::metrics_text() {
  update_gauges();
  return metrics_.serialize();
}

ApiResult Controller::health() {
  json j = {{"status", "ok"},
            {"mechanism", mechanism_name(mechanism_)},
            {"jailed", jail_},
            {"vms", vm_count()},
            {"vm_memory_bytes", vm_memory_bytes()},
            {"memory_budget_bytes", budget_bytes_},
            {"inflight", inflight_.load()}};
  return ApiResult{200, "", j, 0};
}

// ---------------------------------------------------------------------------
// Invoke

InvokeResult Controller::invoke(const std::string& name, std::string_view input) {
  const auto t0 = Clock::now();
  InvokeResult res;
  auto fn = current(name);
  if (!fn) {
    res.status = 404;
    res.error = "no function named '" + name + "'";
    return res;
  }
  auto& stats = *fn->stats;
  auto finish = [&](const char* outcome) {
    res.duration_us = us_since(t0);
    metrics_.record_invocation(name, outcome, static_cast<double>(res.duration_us) / 1e6);
    std::lock_guard<std::mutex> l(stats.mu);
    const std::string o = outcome;
    if (o == "ok") stats.ok++;
    else if (o == "error") stats.error++;
    else if (o == "timeout") stats.timeout++;
    else if (o == "vm_error") stats.vm_error++;
    else stats.rejected++;
    if (o != "rejected") stats.add_latency(static_cast<uint32_t>(std::min<uint64_t>(res.duration_us, 0xffffffffu)));
    return res;
  };
  auto reject = [&](const std::string& why) {
    res.status = 429;
    res.error = why;
    res.retry_after_s = 1;
    return finish("rejected");
  };
  // Admission: bounded concurrency, never an unbounded queue.
  if (stats.inflight.fetch_add(1) >= fn->rec.spec.max_concurrency) {
    stats.inflight--;
    return reject("function '" + name + "' already has max_concurrency (" + std::to_string(fn->rec.spec.max_concurrency) +
                  ") invocations in progress");
  }
  if (inflight_.fetch_add(1) >= cfg_.limits.max_inflight) {
    inflight_--;
    stats.inflight--;
    return reject("emberd already has limits.max_inflight (" + std::to_string(cfg_.limits.max_inflight) +
                  ") invocations in progress");
  }
  struct Release {
    std::atomic<uint32_t>& a;
    std::atomic<uint32_t>& b;
    ~Release() {
      a--;
      b--;
    }
  } release{stats.inflight, inflight_};

  std::shared_ptr<Vm> vm = take_ready(fn);
  res.pool_hit = vm != nullptr;
  // A miss counts whether or not a VM can then be started for it (both the
  // metric and GET /v1/functions/NAME).
  if (res.pool_hit) {
    metrics_.pool_hit(name);
  } else {
    metrics_.pool_miss(name);
  }
  {
    std::lock_guard<std::mutex> l(stats.mu);
    (res.pool_hit ? stats.pool_hits : stats.pool_misses)++;
  }
  if (!vm) {
    std::string why;
    auto slot = admit_vm(fn, true, &why);
    if (!slot) return reject(why);
    auto started = start_vm(fn, std::move(*slot));
    if (!started) {
      res.status = 502;
      res.error = "could not start a VM for '" + name + "': " + started.message();
      return finish("vm_error");
    }
    vm = *started;
  }
  vm->state = VmState::kBusy;
  // A VM that will be reset in place and parked again keeps its pool slot
  // while it works (counted as starting); any other is replaced right away.
  const bool may_reuse = fn->rec.mechanism == Mechanism::kSnapshot && vm->uses + 1 < vm->max_uses;
  if (may_reuse) {
    std::lock_guard<std::mutex> l(fn->mu);
    fn->starting++;
  } else {
    request_refill(fn);
  }
  res.vm_id = vm->id;

  const auto t_vm = Clock::now();
  const auto deadline = t_vm + std::chrono::milliseconds(fn->rec.spec.timeout_ms);
  Exchange x;
  if (fn->rec.mechanism == Mechanism::kSnapshot) {
    x = vsock_exchange(vm->sock.get(), input, std::move(vm->leftover), deadline, cfg_.limits.max_output_bytes);
  } else {
    x = pipes_exchange(std::move(vm->in), vm->out.get(), vm->err.get(), input, deadline, cfg_.limits.max_output_bytes);
  }
  const auto t_exchanged = Clock::now();
  const char* outcome = "ok";
  switch (x.end) {
    case Exchange::End::kExited: {
      if (fn->rec.mechanism == Mechanism::kSnapshot) {
        res.exit_code = x.exit_code();
      } else {
        // The VMM's status is the program's (ember-vmm run); 125 with an
        // "ember-vmm:" line is the VMM's own failure.
        if (!vm->wait_exit(std::max(deadline, Clock::now()) + std::chrono::seconds(2))) {
          retire_vm(vm, "no exit after closing stdio");
          res.status = 502;
          res.error = "the VMM closed the program's output but did not exit";
          outcome = "vm_error";
          break;
        }
        const ExitStatus st = vm->exit_status();
        const std::string vmm_line = last_line(x.err, "ember-vmm: ");
        if (vm->stop_requested.load()) {
          res.status = 502;
          res.error = "the VM was stopped: " + vm->stop_reason();
          outcome = "vm_error";
        } else if (st.signaled) {
          const std::string verdict = vm->death_verdict();
          res.status = 502;
          res.error = "the VMM was " + st.describe() + (verdict.empty() ? "" : ": " + verdict);
          outcome = "vm_error";
        } else if (st.value == 125 && !vmm_line.empty()) {
          res.status = 502;
          res.error = "the VM failed: " + vmm_line;
          outcome = "vm_error";
        } else {
          res.exit_code = st.value;
        }
      }
      if (res.status == 200) {
        res.out = std::move(x.out);
        res.err = std::move(x.err);
        outcome = res.exit_code == 0 ? "ok" : "error";
      }
      break;
    }
    case Exchange::End::kTimeout:
      vm->kill_and_wait("invocation timed out", Clock::now() + std::chrono::seconds(5));
      retire_vm(vm, "invocation timed out");
      res.status = 504;
      res.error = "function '" + name + "' timed out after " + std::to_string(fn->rec.spec.timeout_ms) + " ms; its VM was killed";
      outcome = "timeout";
      break;
    case Exchange::End::kTooMuchOutput:
      retire_vm(vm, "output limit");
      res.status = 502;
      res.error = x.error + " (limits.max_output_bytes); its VM was killed";
      outcome = "vm_error";
      break;
    case Exchange::End::kBroken: {
      const bool stopped = vm->stop_requested.load();
      if (!stopped) vm->wait_exit(Clock::now() + std::chrono::seconds(1));
      res.status = 502;
      if (vm->stop_requested.load() && !vm->stop_reason().empty()) {
        res.error = "the VM was stopped: " + vm->stop_reason();
      } else {
        std::string detail = x.error;
        if (vm->exited()) detail += "; the VMM " + vm->exit_status().describe();
        const std::string line = vmm_failure_text(vm, x.err);
        if (!line.empty()) detail += ": " + line;
        res.error = "the VM failed: " + detail;
      }
      outcome = "vm_error";
      break;
    }
  }
  // One VM never serves two functions. Snapshot mechanism: it is reset in
  // place to the template and parked again (up to invocations_per_vm), if the
  // pool wants it; otherwise, and always with the boot mechanism, discarded.
  vm->uses++;
  if (may_reuse && x.end == Exchange::End::kExited && res.status == 200 && !vm->stop_requested.load()) {
    vm->sock.reset();
    vm->state = VmState::kStarting;
    const auto exited_at = Clock::now();
    const uint32_t others = stats.inflight.load() - 1;  // this one still counts until it returns
    post_task([this, vm, exited_at, others] { recycle(vm, exited_at, others); });
  } else {
    retire_vm(vm, "invocation done");
    if (may_reuse) {
      {
        std::lock_guard<std::mutex> l(fn->mu);
        fn->starting--;
      }
      request_refill(fn);
    }
  }
  if (res.status != 200) log_.info("invoke %s on %s: %d %s", name.c_str(), vm->id.c_str(), res.status, res.error.c_str());
  if (log_.enabled(LogLevel::kDebug))
    log_.debug("invoke %s on %s (%s): vm %llu us, exchange %llu us, after %llu us", name.c_str(), vm->id.c_str(),
               res.pool_hit ? "hit" : "miss",
               static_cast<unsigned long long>(std::chrono::duration_cast<std::chrono::microseconds>(t_vm - t0).count()),
               static_cast<unsigned long long>(std::chrono::duration_cast<std::chrono::microseconds>(t_exchanged - t_vm).count()),
               static_cast<unsigned long long>(us_since(t_exchanged)));
  return finish(outcome);
}

}  // namespace ember::controller

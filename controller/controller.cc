// Controller, start-up and reading: the state directory and its lock, the
// VMM's capabilities, orphans of a previous run, the functions on disk, the
// registry's lookups, and what GET answers (functions, VMs, health, metrics).
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
#include "base/percentile.h"
#include "base/self_path.h"
#include "controller/controller_internal.h"
#include "controller/fsutil.h"
#include "controller/image_build.h"
#include "controller/system_limits.h"


namespace ember::controller {

using nlohmann::json;
using namespace detail;

namespace {

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
  std::sort(lat.begin(), lat.end());
  j["latency_us"] = {{"samples", lat.size()},
                     {"p50", nearest_rank(lat, 0.50)},
                     {"p90", nearest_rank(lat, 0.90)},
                     {"p99", nearest_rank(lat, 0.99)},
                     {"max", lat.empty() ? 0u : lat.back()}};
  return j;
}

ApiResult Controller::describe(const std::string& name) {
  auto fn = current(name);
  if (!fn) return ApiResult{Outcome::kNotFound, "no function named '" + name + "'", {}, 0};
  return ApiResult{Outcome::kOk, "", describe_json(fn), 0};
}

ApiResult Controller::list_functions() {
  std::vector<std::shared_ptr<FunctionVersion>> fns;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [name, fn] : functions_) fns.push_back(fn);
  }
  json arr = json::array();
  for (auto& fn : fns) arr.push_back(describe_json(fn));
  return ApiResult{Outcome::kOk, "", arr, 0};
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
  return ApiResult{Outcome::kOk, "", arr, 0};
}

ApiResult Controller::delete_vm(const std::string& id) {
  std::shared_ptr<Vm> vm;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = vms_.find(id);
    if (it == vms_.end()) return ApiResult{Outcome::kNotFound, "no VM with id '" + id + "'", {}, 0};
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
  return ApiResult{Outcome::kRemoved, "", {}, 0};
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
  return ApiResult{Outcome::kOk, "", j, 0};
}


}  // namespace ember::controller

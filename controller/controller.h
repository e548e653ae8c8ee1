// Controller: the heart of emberd. Owns the functions (registry persisted in
// the state directory), their pools of parked VMs, every VMM process, the
// invocation path, the memory budget and the metrics. The HTTP layer
// (http_api.h) only translates requests into these calls.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/result.h"
#include "controller/admission.h"
#include "controller/config.h"
#include "controller/outcome.h"
#include "controller/function_spec.h"
#include "controller/log.h"
#include "controller/metrics.h"
#include "controller/process.h"
#include "controller/system_limits.h"
#include "controller/vm.h"

namespace ember::controller {

// Per function name; survives redeploys.
struct FunctionStats {
  std::atomic<uint32_t> inflight{0};
  std::mutex mu;
  uint64_t ok = 0, error = 0, timeout = 0, vm_error = 0, rejected = 0;
  uint64_t pool_hits = 0, pool_misses = 0;
  std::vector<uint32_t> latency_us;  // ring of the last kLatencyRing invocations
  size_t latency_next = 0;
  static constexpr size_t kLatencyRing = 2048;
  void add_latency(uint32_t us);
};

// One deployed version of a function: immutable record + its pool.
struct FunctionVersion {
  FunctionRecord rec;
  std::string dir;           // STATE/functions/NAME/vN
  std::string image_path;    // dir/image.img
  std::string snapshot_dir;  // dir/snapshot
  std::shared_ptr<FunctionStats> stats;

  std::mutex mu;  // the fields below
  std::deque<std::shared_ptr<Vm>> ready;
  uint32_t starting = 0;
  bool retired = false;        // replaced or deleted: no refill, no new VMs
  bool refill_queued = false;
  uint32_t failures = 0;       // consecutive VM start failures
  Clock::time_point retry_at;  // no refill before (back-off after failures)
  std::string last_error;
  bool memory_limited = false; // the pool is short: admission refused (memory, tasks, max_vms, uids)
  uint32_t pool_size = 0;      // the pool kept: rec.spec.pool, capped at what the host can hold

  std::atomic<uint64_t> mem_estimate{4ull << 20};  // private memory of one VM, learned from parked VMs
  std::atomic<bool> remove_files{false};           // delete `dir` when the last reference goes
  ~FunctionVersion();
};

// An answer to the HTTP layer: the outcome, and either a JSON body or an error.
struct ApiResult {
  Outcome outcome = Outcome::kOk;
  std::string error;  // non-empty unless kOk, kCreated, kRemoved
  nlohmann::json body;
  int retry_after_s = 0;
};

struct InvokeResult {
  Outcome outcome = Outcome::kOk;  // or kNotFound, kBusy, kVmFailed, kTimeout
  std::string error;
  int retry_after_s = 0;
  int exit_code = 0;
  std::string out, err;
  std::string vm_id;
  bool pool_hit = false;
  uint64_t duration_us = 0;
};

class Controller {
 public:
  Controller(Config cfg, Logger& log);
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  // State directory and its lock, process limits, the VMM's capabilities,
  // orphans of a previous run, the functions on disk, the worker threads.
  Result<void> start();
  // Stops the workers and kills every VM (waits for them to be gone).
  void shutdown();

  ApiResult deploy(const std::string& name, const std::string& body, const FunctionSpec& spec);
  ApiResult remove(const std::string& name);
  ApiResult describe(const std::string& name);
  ApiResult list_functions();
  InvokeResult invoke(const std::string& name, std::string_view input);
  ApiResult list_vms();
  ApiResult delete_vm(const std::string& id);
  std::string metrics_text();
  ApiResult health();

  const Config& config() const { return cfg_; }
  Metrics& metrics() { return metrics_; }
  Mechanism mechanism() const { return mechanism_; }
  bool jailed() const { return jail_; }
  uint64_t memory_budget_bytes() const { return budget_bytes_; }

  // Test and benchmark hooks.
  size_t vm_count() const;
  uint64_t vm_memory_bytes() const { return static_cast<uint64_t>(std::max<int64_t>(0, admission_.usage().mem_bytes)); }

 private:
  std::shared_ptr<FunctionVersion> current(const std::string& name) const;
  std::shared_ptr<FunctionStats> stats_for(const std::string& name);
  std::shared_ptr<std::mutex> deploy_lock(const std::string& name);
  // Drops a name's stats and deploy lock once no function has that name.
  void forget_name(const std::string& name, const std::shared_ptr<std::mutex>& lock);
  nlohmann::json describe_json(const std::shared_ptr<FunctionVersion>& fn);
  std::string new_vm_id();

  Result<void> detect_vmm();
  Result<void> lock_state_dir();
  void kill_orphans();
  void load_functions();
  Result<std::shared_ptr<FunctionVersion>> open_version(const FunctionRecord& rec);
  Result<RunResult> jail_cleanup(const std::string& id);
  // The jailer options for a VM of `fn` in jail `id`, running as `uid`.
  JailSpec jail_spec(const std::string& id, const FunctionVersion& fn, uint32_t uid);
  Result<void> take_template(const std::shared_ptr<FunctionVersion>& fn, const Admission::Slot& slot,
                             std::string* user_error);
  // Sets fn->pool_size: the requested pool, or as many VMs as the host could
  // ever hold, with a warning (once) when that is fewer.
  void cap_pool(FunctionVersion& fn);

  // VMs
  // Starts a VM in the room `slot` reserved (admit_vm); the VM holds it until its process is gone.
  Result<std::shared_ptr<Vm>> start_vm(const std::shared_ptr<FunctionVersion>& fn, Admission::Slot slot);
  Result<void> spawn_vm(const std::shared_ptr<Vm>& vm, const std::vector<std::string>& vmm_argv, int in_fd, int out_fd,
                        int err_fd);
  void register_vm(const std::shared_ptr<Vm>& vm);
  void unregister_vm(const std::shared_ptr<Vm>& vm);
  void retire_vm(const std::shared_ptr<Vm>& vm, const std::string& reason);
  void on_vm_exit(const std::shared_ptr<Vm>& vm, ExitStatus st);
  std::shared_ptr<Vm> take_ready(const std::shared_ptr<FunctionVersion>& fn);
  void drain(const std::shared_ptr<FunctionVersion>& fn, const std::string& reason);
  std::string vmm_failure_text(const std::shared_ptr<Vm>& vm, const std::string& captured_err);

  // Admission: room for one more VM of `fn`, reserved, or nullopt and why.
  // For an invocation or a deploy, a parked VM of the largest pool is
  // stopped to make room; the refill never stops anything.
  std::optional<Admission::Slot> admit_vm(const std::shared_ptr<FunctionVersion>& fn, bool for_invocation,
                                          std::string* why);
  VmCost vm_cost(const FunctionVersion& fn) const;
  // What the host lets the VMs use now (the task limits move with the host's load).
  void refresh_capacity();
  // Stops one parked VM of the largest pool; false if none is parked.
  bool shrink_a_pool();
  bool vms_in_transit() const;
  uint64_t slot_events();
  void note_slot_event();

  // Pools
  void request_refill(const std::shared_ptr<FunctionVersion>& fn);
  void refill_worker();
  // Snapshot mechanism: after an invocation the VMM resets the VM in place;
  // reconnect and park it again (on a refill worker, after the answer).
  void recycle(const std::shared_ptr<Vm>& vm, Clock::time_point exited_at, uint32_t others_inflight);
  // Stops parked VMs beyond the pool size that have been idle for idle_vm_ms.
  void trim_idle_extras(const std::shared_ptr<FunctionVersion>& fn);
  void post_task(std::function<void()> task);
  void refill(const std::shared_ptr<FunctionVersion>& fn);
  void housekeeping();  // memory sampling, gauges, refill retries (1 s)
  void janitor_add(std::string run_dir, std::string jail_id);
  void janitor_run();
  void update_gauges();

  Config cfg_;
  Logger& log_;
  Metrics metrics_;
  Reaper reaper_;
  Mechanism mechanism_ = Mechanism::kBoot;
  bool jail_ = false;
  int cgroup_version_ = 1;
  std::string vmm_path_, jailer_path_;
  std::string functions_dir_, run_dir_;
  std::string id_prefix_;       // unique to the state dir: orphans of a previous run carry it
  Fd state_lock_;
  uint64_t budget_bytes_ = 0;
  std::atomic<uint64_t> next_id_{1};
  std::string instance_;

  mutable std::mutex mu_;  // functions_, stats_, deploy_locks_, vms_
  std::map<std::string, std::shared_ptr<FunctionVersion>> functions_;
  std::map<std::string, std::shared_ptr<FunctionStats>> stats_;
  std::map<std::string, std::shared_ptr<std::mutex>> deploy_locks_;
  std::map<std::string, std::shared_ptr<Vm>> vms_;
  Admission admission_;
  // The most threads a parked VMM has had, plus KVM's worker thread and one
  // for either end of its life (kTasksPerVm until measured).
  std::atomic<int64_t> tasks_per_vm_{kTasksPerVm};
  std::atomic<uint32_t> inflight_{0};

  std::mutex refill_mu_;
  std::condition_variable refill_cv_;  // refill workers only
  std::condition_variable stop_cv_;    // housekeeping's 1 s tick, cut short by shutdown
  std::deque<std::shared_ptr<FunctionVersion>> refill_queue_;
  std::deque<std::function<void()>> tasks_;  // recycles (run by the refill workers first)
  // Counts VMs parked and VMs exited (their room given back): admit_vm
  // waits on it, briefly, for room or for a VM it can take from a pool.
  std::mutex slot_mu_;
  std::condition_variable slot_cv_;
  uint64_t slot_events_ = 0;
  std::mutex janitor_mu_;
  std::condition_variable janitor_cv_;
  std::deque<std::pair<std::string, std::string>> janitor_queue_;
  bool stopping_ = false;  // guarded by refill_mu_ (and read under janitor_mu_ via stop_flag_)
  std::atomic<bool> stop_flag_{false};
  std::vector<std::thread> threads_;
  bool started_ = false;
};

}  // namespace ember::controller

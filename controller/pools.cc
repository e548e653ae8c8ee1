// Controller, pools and admission: reserving room for a VM (admission.h),
// shrinking pools for work that waits, refilling, recycling a VM after an
// invocation, trimming idle extras, the 1 s housekeeping and the janitor.
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
#include "controller/controller_internal.h"
#include "controller/fsutil.h"
#include "controller/image_build.h"
#include "controller/system_limits.h"


namespace ember::controller {

using nlohmann::json;
using namespace detail;

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
  auto c = stdio::connect(vm->vsock_path, deadline);
  for (int attempt = 0; !c && !vm->exited() && Clock::now() < deadline && attempt < 200; attempt++) {
    ::usleep(attempt < 10 ? 100 : 2000);
    c = stdio::connect(vm->vsock_path, deadline);
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
  vm->stdio = std::move(*c);
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


}  // namespace ember::controller

// Controller, invoke: a VM from the pool (or started on the spot), the
// program's stdin and output over it, the outcome, and the VM's reuse.
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

namespace {

// An invocation's label in metrics (ember_invocations_total{outcome=...}).
const char* invocation_label(const InvokeResult& r) {
  switch (r.outcome) {
    case Outcome::kOk: return r.exit_code == 0 ? "ok" : "error";
    case Outcome::kTimeout: return "timeout";
    case Outcome::kBusy: return "rejected";
    default: return "vm_error";
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Invoke

InvokeResult Controller::invoke(const std::string& name, std::string_view input) {
  const auto t0 = Clock::now();
  InvokeResult res;
  auto fn = current(name);
  if (!fn) {
    res.outcome = Outcome::kNotFound;
    res.error = "no function named '" + name + "'";
    return res;
  }
  auto& stats = *fn->stats;
  auto finish = [&] {
    res.duration_us = us_since(t0);
    metrics_.record_invocation(name, invocation_label(res), static_cast<double>(res.duration_us) / 1e6);
    std::lock_guard<std::mutex> l(stats.mu);
    switch (res.outcome) {
      case Outcome::kOk: (res.exit_code == 0 ? stats.ok : stats.error)++; break;
      case Outcome::kTimeout: stats.timeout++; break;
      case Outcome::kBusy: stats.rejected++; break;
      default: stats.vm_error++; break;
    }
    if (res.outcome != Outcome::kBusy)
      stats.add_latency(static_cast<uint32_t>(std::min<uint64_t>(res.duration_us, 0xffffffffu)));
    return res;
  };
  auto reject = [&](const std::string& why) {
    res.outcome = Outcome::kBusy;
    res.error = why;
    res.retry_after_s = 1;
    return finish();
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
      res.outcome = Outcome::kVmFailed;
      res.error = "could not start a VM for '" + name + "': " + started.message();
      return finish();
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
    x = stdio::exchange(vm->stdio, input, deadline, cfg_.limits.max_output_bytes);
  } else {
    x = pipes_exchange(std::move(vm->in), vm->out.get(), vm->err.get(), input, deadline, cfg_.limits.max_output_bytes);
  }
  const auto t_exchanged = Clock::now();
  switch (x.end) {
    case Exchange::End::kExited: {
      if (fn->rec.mechanism == Mechanism::kSnapshot) {
        res.exit_code = x.status();
      } else {
        // The VMM's status is the program's (ember-vmm run); 125 with an
        // "ember-vmm:" line is the VMM's own failure.
        if (!vm->wait_exit(std::max(deadline, Clock::now()) + std::chrono::seconds(2))) {
          retire_vm(vm, "no exit after closing stdio");
          res.outcome = Outcome::kVmFailed;
          res.error = "the VMM closed the program's output but did not exit";
          break;
        }
        const ExitStatus st = vm->exit_status();
        const std::string vmm_line = last_line(x.err, "ember-vmm: ");
        if (vm->stop_requested.load()) {
          res.outcome = Outcome::kVmFailed;
          res.error = "the VM was stopped: " + vm->stop_reason();
        } else if (st.signaled) {
          const std::string verdict = vm->death_verdict();
          res.outcome = Outcome::kVmFailed;
          res.error = "the VMM was " + st.describe() + (verdict.empty() ? "" : ": " + verdict);
        } else if (st.value == 125 && !vmm_line.empty()) {
          res.outcome = Outcome::kVmFailed;
          res.error = "the VM failed: " + vmm_line;
        } else {
          res.exit_code = st.value;
        }
      }
      if (res.outcome == Outcome::kOk) {
        res.out = std::move(x.out);
        res.err = std::move(x.err);
      }
      break;
    }
    case Exchange::End::kTimeout:
      vm->kill_and_wait("invocation timed out", Clock::now() + std::chrono::seconds(5));
      retire_vm(vm, "invocation timed out");
      res.outcome = Outcome::kTimeout;
      res.error = "function '" + name + "' timed out after " + std::to_string(fn->rec.spec.timeout_ms) + " ms; its VM was killed";
      break;
    case Exchange::End::kTooMuchOutput:
      retire_vm(vm, "output limit");
      res.outcome = Outcome::kVmFailed;
      res.error = x.error + " (limits.max_output_bytes); its VM was killed";
      break;
    case Exchange::End::kBroken: {
      const bool stopped = vm->stop_requested.load();
      if (!stopped) vm->wait_exit(Clock::now() + std::chrono::seconds(1));
      res.outcome = Outcome::kVmFailed;
      if (vm->stop_requested.load() && !vm->stop_reason().empty()) {
        res.error = "the VM was stopped: " + vm->stop_reason();
      } else {
        std::string detail = x.error;
        if (vm->exited()) detail += "; the VMM " + vm->exit_status().describe();
        const std::string line = vmm_failure_text(vm, x.err);
        if (!line.empty()) detail += ": " + line;
        res.error = "the VM failed: " + detail;
      }
      break;
    }
  }
  // One VM never serves two functions. Snapshot mechanism: it is reset in
  // place to the template and parked again (up to invocations_per_vm), if the
  // pool wants it; otherwise, and always with the boot mechanism, discarded.
  vm->uses++;
  if (may_reuse && x.end == Exchange::End::kExited && res.outcome == Outcome::kOk && !vm->stop_requested.load()) {
    vm->stdio = {};
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
  if (res.outcome != Outcome::kOk)
    log_.info("invoke %s on %s: %s: %s", name.c_str(), vm->id.c_str(), outcome_name(res.outcome), res.error.c_str());
  if (log_.enabled(LogLevel::kDebug))
    log_.debug("invoke %s on %s (%s): vm %llu us, exchange %llu us, after %llu us", name.c_str(), vm->id.c_str(),
               res.pool_hit ? "hit" : "miss",
               static_cast<unsigned long long>(std::chrono::duration_cast<std::chrono::microseconds>(t_vm - t0).count()),
               static_cast<unsigned long long>(std::chrono::duration_cast<std::chrono::microseconds>(t_exchanged - t_vm).count()),
               static_cast<unsigned long long>(us_since(t_exchanged)));
  return finish();
}


}  // namespace ember::controller

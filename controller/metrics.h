// emberd's Prometheus metrics (prometheus-cpp core; served by emberd's own
// HTTP server on GET /metrics with TextSerializer, no second server).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <mutex>
#include <string>

namespace ember::controller {

// Outcome label of ember_invocations_total.
//   ok          the program exited 0
//   error       the program exited non-zero or died of a signal (its answer)
//   timeout     504: the function's timeout passed; the VM was killed
//   vm_error    502: the VM or VMM failed
//   rejected    429: max_concurrency, max_inflight, max_vms or the memory budget
inline constexpr const char* kOutcomes[] = {"ok", "error", "timeout", "vm_error", "rejected"};

class Metrics {
 public:
  Metrics();

  // Per-function series: created on first use, removed with the function.
  // Each is one locked operation, so a removal never frees a series that
  // another thread is about to touch.
  void record_invocation(const std::string& fn, const std::string& outcome, double seconds);
  void pool_hit(const std::string& fn);
  void pool_miss(const std::string& fn);
  void set_pool(const std::string& fn, double ready, double target);
  void remove_function(const std::string& fn);

  // ember_vm_lifecycle_seconds{step}: restore (snapshot → parked at ready),
  // boot (new VM → parked), reset, template (deploy: boot to ready + snapshot).
  prometheus::Histogram& lifecycle(const std::string& step);
  prometheus::Gauge& vms(const std::string& state);  // ember_vms{state}
  prometheus::Counter& http_requests(int code);      // ember_http_requests_total{code}

  prometheus::Gauge* vm_memory_bytes;      // host memory (private RSS) of all VMMs
  prometheus::Gauge* memory_budget_bytes;
  prometheus::Gauge* functions;
  prometheus::Gauge* inflight;
  prometheus::Counter* vm_starts;
  prometheus::Counter* vm_start_failures;
  prometheus::Counter* vm_deaths;          // VMMs that died unasked (parked or busy)
  prometheus::Counter* deploys;
  prometheus::Counter* deploy_failures;

  std::string serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* invocations_;
  prometheus::Family<prometheus::Histogram>* invocation_seconds_;
  prometheus::Family<prometheus::Counter>* pool_hits_;
  prometheus::Family<prometheus::Counter>* pool_misses_;
  prometheus::Family<prometheus::Gauge>* pool_ready_;
  prometheus::Family<prometheus::Gauge>* pool_target_;
  prometheus::Family<prometheus::Histogram>* lifecycle_;
  prometheus::Family<prometheus::Gauge>* vms_;
  prometheus::Family<prometheus::Counter>* http_;
  std::mutex mu_;  // per-function series: lookup + use vs. removal
};

}  // namespace ember::controller

#include "controller/metrics.h"

#include <prometheus/text_serializer.h>

namespace ember::controller {

using namespace prometheus;

namespace {

// 50 µs .. ~150 s, ×2 per bucket: both the warm path and a cold boot land in
// a useful bucket.
Histogram::BucketBoundaries latency_buckets() {
  Histogram::BucketBoundaries b;
  for (double v = 50e-6; v < 200; v *= 2) b.push_back(v);
  return b;
}

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<Registry>()) {
  auto& r = *registry_;
  invocations_ = &BuildCounter().Name("ember_invocations_total").Help("Invocations by function and outcome (ok, error, timeout, vm_error, rejected)").Register(r);
  invocation_seconds_ = &BuildHistogram().Name("ember_invocation_duration_seconds").Help("Invocation latency inside emberd, from request to answer").Register(r);
  pool_hits_ = &BuildCounter().Name("ember_pool_hits_total").Help("Invocations served by a VM parked in the pool").Register(r);
  pool_misses_ = &BuildCounter().Name("ember_pool_misses_total").Help("Invocations that had to start a VM on the spot").Register(r);
  pool_ready_ = &BuildGauge().Name("ember_pool_ready_vms").Help("VMs parked at ready in the function's pool").Register(r);
  pool_target_ = &BuildGauge().Name("ember_pool_target_vms").Help("Pool size the function asked for").Register(r);
  lifecycle_ = &BuildHistogram().Name("ember_vm_lifecycle_seconds").Help("VM lifecycle latency by step (restore, boot, reset, template)").Register(r);
  vms_ = &BuildGauge().Name("ember_vms").Help("VMM processes by state (starting, ready, busy)").Register(r);
  http_ = &BuildCounter().Name("ember_http_requests_total").Help("HTTP requests answered, by status code").Register(r);
  vm_memory_bytes = &BuildGauge().Name("ember_vm_memory_bytes").Help("Host memory used by VMs (private resident memory of the VMM processes)").Register(r).Add({});
  memory_budget_bytes = &BuildGauge().Name("ember_vm_memory_budget_bytes").Help("Host memory emberd lets VMs use (limits.memory_budget_mib)").Register(r).Add({});
  functions = &BuildGauge().Name("ember_functions").Help("Deployed functions").Register(r).Add({});
  inflight = &BuildGauge().Name("ember_invocations_inflight").Help("Invocations in progress").Register(r).Add({});
  vm_starts = &BuildCounter().Name("ember_vm_starts_total").Help("VMs started (restored or booted)").Register(r).Add({});
  vm_start_failures = &BuildCounter().Name("ember_vm_start_failures_total").Help("VM starts that failed").Register(r).Add({});
  vm_deaths = &BuildCounter().Name("ember_vm_deaths_total").Help("VMMs that exited without being asked to").Register(r).Add({});
  deploys = &BuildCounter().Name("ember_deploys_total").Help("Successful deploys").Register(r).Add({});
  deploy_failures = &BuildCounter().Name("ember_deploy_failures_total").Help("Failed deploys").Register(r).Add({});
  for (const char* s : {"restore", "boot", "reset", "template"}) lifecycle(s);
  for (const char* s : {"starting", "ready", "busy"}) vms(s);
}

void Metrics::record_invocation(const std::string& fn, const std::string& outcome, double seconds) {
  std::lock_guard<std::mutex> l(mu_);
  invocations_->Add({{"function", fn}, {"outcome", outcome}}).Increment();
  if (outcome != "rejected") invocation_seconds_->Add({{"function", fn}}, latency_buckets()).Observe(seconds);
}
void Metrics::pool_hit(const std::string& fn) {
  std::lock_guard<std::mutex> l(mu_);
  pool_hits_->Add({{"function", fn}}).Increment();
}
void Metrics::pool_miss(const std::string& fn) {
  std::lock_guard<std::mutex> l(mu_);
  pool_misses_->Add({{"function", fn}}).Increment();
}
void Metrics::set_pool(const std::string& fn, double ready, double target) {
  std::lock_guard<std::mutex> l(mu_);
  pool_ready_->Add({{"function", fn}}).Set(ready);
  pool_target_->Add({{"function", fn}}).Set(target);
}
Histogram& Metrics::lifecycle(const std::string& step) { return lifecycle_->Add({{"step", step}}, latency_buckets()); }
Gauge& Metrics::vms(const std::string& state) { return vms_->Add({{"state", state}}); }
Counter& Metrics::http_requests(int code) { return http_->Add({{"code", std::to_string(code)}}); }

void Metrics::remove_function(const std::string& fn) {
  std::lock_guard<std::mutex> l(mu_);
  for (const char* o : kOutcomes) {
    const Labels ls{{"function", fn}, {"outcome", o}};
    if (invocations_->Has(ls)) invocations_->Remove(&invocations_->Add(ls));
  }
  const Labels one{{"function", fn}};
  if (invocation_seconds_->Has(one)) invocation_seconds_->Remove(&invocation_seconds_->Add(one, latency_buckets()));
  if (pool_hits_->Has(one)) pool_hits_->Remove(&pool_hits_->Add(one));
  if (pool_misses_->Has(one)) pool_misses_->Remove(&pool_misses_->Add(one));
  if (pool_ready_->Has(one)) pool_ready_->Remove(&pool_ready_->Add(one));
  if (pool_target_->Has(one)) pool_target_->Remove(&pool_target_->Add(one));
}

std::string Metrics::serialize() const { return TextSerializer().Serialize(registry_->Collect()); }

}  // namespace ember::controller

// The VMM API's routes: (method, path, body) -> (status, JSON body), with
// Firecracker's resources, field names and status codes. Every body is
// parsed strictly (nlohmann-json without exceptions): malformed JSON, wrong
// types, out-of-range numbers, unknown or missing fields and nesting deeper
// than kApiMaxDepth are 400 with {"fault_message": "..."}; the typed request
// then goes to the VmmController, which decides whether it is allowed now.
//
// No I/O of its own except through the MetricsSink, so that the fuzzer
// (tests/fuzz/fuzz_api_requests.cc) can drive it with a fake backend.
// The HTTP transport is vmm/api_server.h.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "base/result.h"
#include "vmm/vmm_config.h"

namespace ember {

inline constexpr const char kEmberVersion[] = "0.1.0";
inline constexpr const char kApiAppName[] = "ember";
inline constexpr size_t kApiMaxBody = 51200;  // bytes, as Firecracker
inline constexpr int kApiMaxDepth = 8;        // JSON nesting; the deepest valid body has 2

struct HttpResponse {
  int status = 204;
  std::string body;   // JSON, or empty (204)
  std::string allow;  // for 405: the methods the path accepts
};

// Where FlushMetrics writes its JSON line (PUT /metrics opens it).
class MetricsSink {
 public:
  virtual ~MetricsSink() = default;
  virtual Result<void> open(const std::string& path) = 0;
  virtual Result<void> write_line(const std::string& line) = 0;
};

// The real one: appends to a file or named pipe (O_APPEND|O_NONBLOCK; a
// regular file is created 0600 if missing).
class FileMetricsSink : public MetricsSink {
 public:
  ~FileMetricsSink() override;
  Result<void> open(const std::string& path) override;
  Result<void> write_line(const std::string& line) override;

 private:
  int fd_ = -1;
};

class ApiHandlers {
 public:
  // `vm_metrics` adds the VMM's own figures to each metrics line (may be empty).
  ApiHandlers(VmmController* controller, MetricsSink* metrics, std::string id,
              std::function<void(nlohmann::json&)> vm_metrics = {});

  // One request. `path` is the URL path (no query string).
  HttpResponse handle(std::string_view method, std::string_view path, std::string_view body);

  // A response for a transport-level refusal (413, 400 ...), counted.
  HttpResponse error(int status, const std::string& message);

  // --config-file: {"boot-source": ..., "machine-config": ..., "vsock": ...,
  // "metrics": ..., "drives": [], "network-interfaces": []}, applied as the
  // matching PUT requests would be. Does not start the VM.
  Result<void> apply_config_file(std::string_view text);

  // Writes one metrics line now (FlushMetrics; also every 60 s when
  // metrics are configured). Error if metrics are not configured.
  Result<void> flush_metrics();
  bool metrics_configured() const;

  uint64_t requests() const { return requests_; }
  uint64_t failed() const { return failed_; }

 private:
  // `counter`: the metrics key for this request ("put_api_requests.actions"), empty if none.
  HttpResponse route(std::string_view method, std::string_view path, std::string_view body, std::string* counter);

  VmmController* controller_;
  MetricsSink* metrics_;
  std::string id_;
  std::function<void(nlohmann::json&)> vm_metrics_;
  uint64_t requests_ = 0, failed_ = 0;
  std::map<std::string, uint64_t> counts_;  // "group.resource_count" / "group.resource_fails"
};

// Parses a JSON body strictly: an object (or any value if !want_object),
// nesting <= kApiMaxDepth. Exposed for tests.
Result<void> parse_json_body(std::string_view body, nlohmann::json* out, bool want_object = true);

}  // namespace ember

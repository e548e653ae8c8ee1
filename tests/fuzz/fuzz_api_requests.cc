// libFuzzer target for the VMM API's request layer (vmm/api_handlers.cc,
// vmm/vmm_config.cc): routing, strict JSON parsing and validation, the
// state machine, fault messages and responses, and --config-file parsing.
// A fake backend and metrics sink stand in for the VM and the file system,
// so every request path runs, including start, pause, snapshot and load.
//
// Input: a sequence of requests, each "M PATH\nBODY" and separated by a NUL
// byte; M picks the method (G GET, P PUT, A PATCH, else the letter itself as
// a method name). The whole input is also fed to apply_config_file().
// Invariants checked: every response has a status from the documented set;
// every non-204 body is a JSON object (errors with a non-empty
// fault_message); 204 has no body; nothing crashes or leaks (ASan, UBSan).
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "vmm/api_handlers.h"
#include "vmm/vmm_config.h"

namespace {

struct Backend : ember::MachineBackend {
  int calls = 0;
  ember::Result<void> maybe() {
    // Fail every third call: the error paths matter as much as success.
    if (++calls % 3 == 0) return ember::Error{"backend refused"};
    return ember::Ok();
  }
  ember::Result<void> start(const ember::VmmConfig&) override { return maybe(); }
  ember::Result<void> pause() override { return maybe(); }
  ember::Result<void> resume() override { return maybe(); }
  ember::Result<void> create_snapshot(const ember::SnapshotCreateSpec&) override { return maybe(); }
  ember::Result<void> load_snapshot(const ember::SnapshotLoadSpec& s, ember::VmmConfig* c) override {
    if (s.vsock_uds_override) c->vsock = ember::VsockSpec{3, *s.vsock_uds_override};
    return maybe();
  }
};

struct Sink : ember::MetricsSink {
  ember::Result<void> open(const std::string& p) override {
    if (p.size() % 2) return ember::Error{"cannot open"};
    return ember::Ok();
  }
  ember::Result<void> write_line(const std::string& line) override {
    if (line.empty() || line.back() != '\n') abort();
    if (!nlohmann::json::parse(line, nullptr, false).is_object()) abort();
    return ember::Ok();
  }
};

void check(const ember::HttpResponse& r) {
  switch (r.status) {
    case 200:
    case 204:
    case 400:
    case 404:
    case 405:
    case 413:
      break;
    default:
      abort();
  }
  if (r.status == 204) {
    if (!r.body.empty()) abort();
    return;
  }
  const auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (!j.is_object()) abort();
  if (r.status >= 400) {
    auto it = j.find("fault_message");
    if (it == j.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) abort();
  }
  if (r.status == 405 && r.allow.empty()) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  {
    Backend backend;
    Sink sink;
    ember::VmmController controller(&backend);
    ember::ApiHandlers api(&controller, &sink, "fuzz");
    size_t pos = 0;
    int requests = 0;
    while (pos < input.size() && requests++ < 64) {
      size_t end = input.find('\0', pos);
      if (end == std::string_view::npos) end = input.size();
      const std::string_view rec = input.substr(pos, end - pos);
      pos = end + 1;
      if (rec.size() < 2) continue;
      std::string method;
      switch (rec[0]) {
        case 'G':
          method = "GET";
          break;
        case 'P':
          method = "PUT";
          break;
        case 'A':
          method = "PATCH";
          break;
        default:
          method = std::string(1, rec[0]);
      }
      const size_t nl = rec.find('\n', 1);
      const std::string_view path = rec.substr(1, nl == std::string_view::npos ? std::string_view::npos : nl - 1);
      const std::string_view body = nl == std::string_view::npos ? std::string_view() : rec.substr(nl + 1);
      check(api.handle(method, path, body));
      if (controller.state() == ember::InstanceState::kRunning && requests % 7 == 0) controller.on_vm_exit(1, "gone");
    }
    check(api.error(413, "too large"));
    (void)api.flush_metrics();
  }
  {
    Backend backend;
    Sink sink;
    ember::VmmController controller(&backend);
    ember::ApiHandlers api(&controller, &sink, "fuzz");
    auto r = api.apply_config_file(input);
    if (!r && r.message().empty()) abort();
  }
  return 0;
}

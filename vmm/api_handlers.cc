#include "vmm/api_handlers.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <initializer_list>
#include <optional>

#include <nlohmann/json.hpp>

namespace ember {

using json = nlohmann::json;

namespace {

// ---------------------------------------------------------------------------
// Strict JSON: a SAX pass that checks syntax and depth and keeps the parser's
// message, then the DOM parse (both without exceptions).

class ValidatingSax {
 public:
  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(json::number_integer_t) { return true; }
  bool number_unsigned(json::number_unsigned_t) { return true; }
  bool number_float(json::number_float_t, const json::string_t&) { return true; }
  bool string(json::string_t&) { return true; }
  bool binary(json::binary_t&) { return true; }
  bool start_object(std::size_t) { return push(); }
  bool key(json::string_t&) { return true; }
  bool end_object() { return pop(); }
  bool start_array(std::size_t) { return push(); }
  bool end_array() { return pop(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> from "parse error".
    std::string what = ex.what();
    const auto at = what.find("] ");
    error = at == std::string::npos ? what : what.substr(at + 2);
    return false;
  }

  std::string error;

 private:
  bool push() {
    if (++depth_ > kApiMaxDepth) {
      error = "JSON nested deeper than " + std::to_string(kApiMaxDepth) + " levels";
      return false;
    }
    return true;
  }
  bool pop() {
    depth_--;
    return true;
  }
  int depth_ = 0;
};

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// A client-supplied name in a message: bounded and printable.
std::string shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  if (s.size() > 64) out += "...";
  return out;
}

const char* type_name(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
      return "a negative integer";
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number with a fraction or exponent";
    default:
      return "something else";
  }
}

// Field access on an object already known to be one. `where` names it in
// messages ("machine-config", "mem_backend").
class Fields {
 public:
  Fields(const json& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

  Result<void> only(std::initializer_list<const char*> known) const {
    for (auto it = obj_.begin(); it != obj_.end(); ++it) {
      bool ok = false;
      for (const char* k : known) ok |= it.key() == k;
      if (ok) continue;
      std::string list;
      for (const char* k : known) list += std::string(list.empty() ? "" : ", ") + k;
      return Error{"unknown field `" + shown(it.key()) + "` in " + where_ + " (known fields: " + list + ")"};
    }
    return Ok();
  }

  // Absent and null are both "not given" for optional fields.
  const json* find(const char* key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  Result<std::optional<std::string>> opt_string(const char* key) const {
    const json* v = find(key);
    if (!v) return std::optional<std::string>{};
    if (!v->is_string()) return type_error(key, "a string", *v);
    return std::optional<std::string>(v->get_ref<const std::string&>());
  }
  Result<std::string> string(const char* key) const {
    EMBER_TRY(auto v, opt_string(key));
    if (!v) return missing(key);
    return std::move(*v);
  }
  Result<std::optional<uint64_t>> opt_uint(const char* key, uint64_t max) const {
    const json* v = find(key);
    if (!v) return std::optional<uint64_t>{};
    if (!v->is_number_unsigned()) return type_error(key, "a non-negative integer", *v);
    const uint64_t n = v->get<uint64_t>();
    if (n > max) return Error{"field `" + std::string(key) + "` in " + where_ + ": " + std::to_string(n) +
                              " is out of range (max " + std::to_string(max) + ")"};
    return std::optional<uint64_t>(n);
  }
  Result<uint64_t> uint(const char* key, uint64_t max) const {
    EMBER_TRY(auto v, opt_uint(key, max));
    if (!v) return missing(key);
    return *v;
  }
  Result<std::optional<bool>> opt_bool(const char* key) const {
    const json* v = find(key);
    if (!v) return std::optional<bool>{};
    if (!v->is_boolean()) return type_error(key, "a boolean", *v);
    return std::optional<bool>(v->get<bool>());
  }
  Result<const json*> opt_object(const char* key) const {
    const json* v = find(key);
    if (v && !v->is_object()) return type_error(key, "an object", *v);
    return v;
  }
  // A string that must be one of `allowed`.
  Result<std::optional<std::string>> opt_enum(const char* key, std::initializer_list<const char*> allowed) const {
    EMBER_TRY(auto v, opt_string(key));
    if (!v) return v;
    for (const char* a : allowed)
      if (*v == a) return v;
    std::string list;
    for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
    return Error{"field `" + std::string(key) + "` in " + where_ + ": unknown value `" + shown(*v) +
                 "` (expected one of " + list + ")"};
  }

 private:
  Error type_error(const char* key, const char* want, const json& got) const {
    return Error{"field `" + std::string(key) + "` in " + where_ + ": expected " + want + ", got " + type_name(got)};
  }
  Error missing(const char* key) const { return Error{"missing field `" + std::string(key) + "` in " + where_}; }

  const json& obj_;
  std::string where_;
};

HttpResponse ok_json(const json& j) { return HttpResponse{200, dump(j), {}}; }
HttpResponse no_content() { return HttpResponse{204, {}, {}}; }
HttpResponse fault(int status, const std::string& message) {
  return HttpResponse{status, dump(json{{"fault_message", message}}), {}};
}
HttpResponse from(const Result<void>& r) { return r ? no_content() : fault(400, r.message()); }

uint64_t realtime_ms() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

// ---------------------------------------------------------------------------
// Typed requests from JSON objects (shared by the routes and --config-file).

Result<BootSourceSpec> boot_source_from(const json& j) {
  Fields f(j, "boot-source");
  EMBER_TRY_VOID(f.only({"kernel_image_path", "boot_args", "initrd_path"}));
  BootSourceSpec s;
  EMBER_TRY(s.kernel_image_path, f.string("kernel_image_path"));
  EMBER_TRY(s.boot_args, f.opt_string("boot_args"));
  EMBER_TRY(s.initrd_path, f.opt_string("initrd_path"));
  return s;
}

struct MachinePatch {
  std::optional<uint64_t> vcpu_count, mem_size_mib;
  std::optional<bool> smt, track_dirty_pages;
};

Result<MachinePatch> machine_from(const json& j, bool all_required) {
  Fields f(j, "machine-config");
  EMBER_TRY_VOID(f.only({"vcpu_count", "mem_size_mib", "smt", "track_dirty_pages", "cpu_template", "huge_pages"}));
  MachinePatch p;
  EMBER_TRY(p.vcpu_count, f.opt_uint("vcpu_count", 32));
  EMBER_TRY(p.mem_size_mib, f.opt_uint("mem_size_mib", uint64_t{1} << 32));
  if (all_required && !p.vcpu_count) return Error{"missing field `vcpu_count` in machine-config"};
  if (all_required && !p.mem_size_mib) return Error{"missing field `mem_size_mib` in machine-config"};
  EMBER_TRY(p.smt, f.opt_bool("smt"));
  EMBER_TRY(p.track_dirty_pages, f.opt_bool("track_dirty_pages"));
  EMBER_TRY(auto tmpl, f.opt_string("cpu_template"));
  if (tmpl && *tmpl != "None")
    return Error{"cpu_template `" + shown(*tmpl) + "` is not supported: Ember has no CPU templates (use \"None\")"};
  EMBER_TRY(auto huge, f.opt_string("huge_pages"));
  if (huge && *huge != "None")
    return Error{"huge_pages `" + shown(*huge) + "` is not supported: guest memory uses 4 KiB host pages (use \"None\")"};
  return p;
}

Result<VsockSpec> vsock_from(const json& j) {
  Fields f(j, "vsock");
  EMBER_TRY_VOID(f.only({"guest_cid", "uds_path", "vsock_id"}));
  VsockSpec v;
  EMBER_TRY(v.guest_cid, f.uint("guest_cid", UINT64_MAX));
  EMBER_TRY(v.uds_path, f.string("uds_path"));
  EMBER_TRY(auto id, f.opt_string("vsock_id"));  // deprecated in Firecracker; accepted, ignored
  (void)id;
  return v;
}

Result<MetricsSpec> metrics_from(const json& j) {
  Fields f(j, "metrics");
  EMBER_TRY_VOID(f.only({"metrics_path"}));
  MetricsSpec m;
  EMBER_TRY(m.metrics_path, f.string("metrics_path"));
  return m;
}

Result<SnapshotCreateSpec> snapshot_create_from(const json& j) {
  Fields f(j, "snapshot/create");
  EMBER_TRY_VOID(f.only({"snapshot_path", "mem_file_path", "snapshot_type"}));
  SnapshotCreateSpec s;
  EMBER_TRY(s.snapshot_path, f.string("snapshot_path"));
  EMBER_TRY(s.mem_file_path, f.string("mem_file_path"));
  EMBER_TRY(auto type, f.opt_enum("snapshot_type", {"Full", "Diff"}));
  s.type = type && *type == "Diff" ? SnapshotType::kDiff : SnapshotType::kFull;
  return s;
}

Result<SnapshotLoadSpec> snapshot_load_from(const json& j) {
  Fields f(j, "snapshot/load");
  EMBER_TRY_VOID(f.only({"snapshot_path", "mem_backend", "mem_file_path", "resume_vm", "enable_diff_snapshots",
                         "track_dirty_pages", "vsock_override", "network_overrides", "clock_realtime"}));
  SnapshotLoadSpec s;
  EMBER_TRY(s.snapshot_path, f.string("snapshot_path"));
  EMBER_TRY(const json* backend, f.opt_object("mem_backend"));
  EMBER_TRY(auto mem_file, f.opt_string("mem_file_path"));
  if (backend && mem_file) return Error{"snapshot/load: give either mem_backend or mem_file_path, not both"};
  if (!backend && !mem_file) return Error{"snapshot/load: missing mem_backend ({\"backend_type\": \"File\", \"backend_path\": ...})"};
  if (backend) {
    Fields b(*backend, "mem_backend");
    EMBER_TRY_VOID(b.only({"backend_type", "backend_path"}));
    EMBER_TRY(auto type, b.opt_enum("backend_type", {"File", "Uffd"}));
    if (!type) return Error{"missing field `backend_type` in mem_backend"};
    if (*type == "Uffd")
      return Error{"mem_backend backend_type Uffd is not supported: Ember maps the memory file copy-on-write (use File)"};
    EMBER_TRY(s.mem_file_path, b.string("backend_path"));
  } else {
    s.mem_file_path = *mem_file;
  }
  EMBER_TRY(auto resume, f.opt_bool("resume_vm"));
  s.resume_vm = resume.value_or(false);
  EMBER_TRY(auto diff_old, f.opt_bool("enable_diff_snapshots"));
  EMBER_TRY(auto dirty, f.opt_bool("track_dirty_pages"));
  s.track_dirty_pages = dirty.value_or(false) || diff_old.value_or(false);
  EMBER_TRY(auto clock, f.opt_bool("clock_realtime"));  // Ember's guest always reads the host's time after a restore
  (void)clock;
  EMBER_TRY(const json* vsock, f.opt_object("vsock_override"));
  if (vsock) {
    Fields v(*vsock, "vsock_override");
    EMBER_TRY_VOID(v.only({"uds_path"}));
    EMBER_TRY(auto uds, v.string("uds_path"));
    s.vsock_uds_override = std::move(uds);
  }
  if (const json* nets = f.find("network_overrides")) {
    if (!nets->is_array()) return Error{std::string("field `network_overrides` in snapshot/load: expected an array, got ") + type_name(*nets)};
    if (!nets->empty()) return Error{"network_overrides: Ember microVMs have no network interfaces"};
  }
  return s;
}

const char* kNoDrives =
    "Block devices are not supported (yet): an Ember guest reads its files from the function image (boot-source "
    "initrd_path)";
const char* kNoNet =
    "Network interfaces are not supported (yet): an Ember guest talks to the host over vsock (PUT /vsock)";

json machine_json(const MachineSpec& m) {
  return json{{"vcpu_count", m.vcpu_count},
              {"mem_size_mib", m.mem_size_mib},
              {"smt", m.smt},
              {"track_dirty_pages", m.track_dirty_pages},
              {"huge_pages", "None"}};
}

}  // namespace

Result<void> parse_json_body(std::string_view body, json* out, bool want_object) {
  if (body.empty()) return Error{"empty request body: a JSON object is expected"};
  ValidatingSax sax;
  if (!json::sax_parse(body.begin(), body.end(), &sax, json::input_format_t::json, true, false))
    return Error{"malformed JSON body: " + (sax.error.empty() ? std::string("syntax error") : sax.error)};
  json j = json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded()) return Error{"malformed JSON body"};
  if (want_object && !j.is_object()) return Error{std::string("the JSON body must be an object, got ") + type_name(j)};
  *out = std::move(j);
  return Ok();
}

// ---------------------------------------------------------------------------

FileMetricsSink::~FileMetricsSink() {
  if (fd_ >= 0) ::close(fd_);
}

Result<void> FileMetricsSink::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0600);
  if (fd < 0) return errno_error("metrics_path " + path);
  struct stat st;
  if (::fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode))) {
    ::close(fd);
    return Error{"metrics_path " + path + ": not a regular file or named pipe"};
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  return Ok();
}

Result<void> FileMetricsSink::write_line(const std::string& line) {
  if (fd_ < 0) return Error{"metrics are not configured"};
  // One write per line (O_APPEND): lines never interleave. A full pipe drops
  // the line rather than blocking the event loop.
  ssize_t n;
  do {
    n = ::write(fd_, line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno_error("writing metrics");
  if (static_cast<size_t>(n) != line.size()) return Error{"writing metrics: short write"};
  return Ok();
}

// ---------------------------------------------------------------------------

ApiHandlers::ApiHandlers(VmmController* controller, MetricsSink* metrics, std::string id,
                         std::function<void(json&)> vm_metrics)
    : controller_(controller), metrics_(metrics), id_(std::move(id)), vm_metrics_(std::move(vm_metrics)) {}

bool ApiHandlers::metrics_configured() const { return controller_->config().metrics.has_value(); }

HttpResponse ApiHandlers::error(int status, const std::string& message) {
  requests_++;
  failed_++;
  counts_["api_server.refused"]++;
  return fault(status, message);
}

HttpResponse ApiHandlers::handle(std::string_view method, std::string_view path, std::string_view body) {
  requests_++;
  std::string counter;
  HttpResponse r = route(method, path, body, &counter);
  const bool failed = r.status >= 400;
  if (failed) failed_++;
  if (!counter.empty()) {
    counts_[counter + "_count"]++;
    if (failed) counts_[counter + "_fails"]++;
  }
  return r;
}

HttpResponse ApiHandlers::route(std::string_view method, std::string_view path, std::string_view body,
                                std::string* counter) {
  const bool get = method == "GET", put = method == "PUT", patch = method == "PATCH";
  auto wrong_method = [&](const char* allow) {
    HttpResponse r = fault(405, "Invalid request method and/or path: " + shown(method) + " " + shown(path) +
                                    " (allowed: " + allow + ")");
    r.allow = allow;
    return r;
  };
  // Parses the body into an object or answers 400.
  json j;
  auto parse = [&]() -> Result<void> { return parse_json_body(body, &j); };

  if (path == "/") {
    if (!get) return wrong_method("GET");
    *counter = "get_api_requests.instance_info";
    json info{{"app_name", kApiAppName},
              {"id", id_},
              {"state", instance_state_name(controller_->state())},
              {"vmm_version", kEmberVersion}};
    info["guest_ready"] = controller_->guest_ready();
    if (controller_->state() == InstanceState::kExited) info["exit_status"] = controller_->exit_status();
    return ok_json(info);
  }
  if (path == "/version") {
    if (!get) return wrong_method("GET");
    *counter = "get_api_requests.vmm_version";
    return ok_json(json{{"firecracker_version", kEmberVersion}});
  }
  if (path == "/boot-source") {
    if (!put) return wrong_method("PUT");
    *counter = "put_api_requests.boot_source";
    if (auto r = parse(); !r) return fault(400, r.message());
    auto spec = boot_source_from(j);
    if (!spec) return fault(400, spec.message());
    return from(controller_->set_boot_source(std::move(*spec)));
  }
  if (path == "/machine-config") {
    if (get) {
      *counter = "get_api_requests.machine_cfg";
      return ok_json(machine_json(controller_->config().machine));
    }
    if (!put && !patch) return wrong_method("GET, PUT, PATCH");
    *counter = put ? "put_api_requests.machine_cfg" : "patch_api_requests.machine_cfg";
    if (auto r = parse(); !r) return fault(400, r.message());
    auto p = machine_from(j, put);
    if (!p) return fault(400, p.message());
    if (put) {
      MachineSpec m;
      m.vcpu_count = static_cast<uint32_t>(*p->vcpu_count);
      m.mem_size_mib = *p->mem_size_mib;
      m.smt = p->smt.value_or(false);
      m.track_dirty_pages = p->track_dirty_pages.value_or(false);
      return from(controller_->put_machine_config(m));
    }
    std::optional<uint32_t> vcpus;
    if (p->vcpu_count) vcpus = static_cast<uint32_t>(*p->vcpu_count);
    return from(controller_->patch_machine_config(vcpus, p->mem_size_mib, p->smt, p->track_dirty_pages));
  }
  if (path == "/vsock") {
    if (!put) return wrong_method("PUT");
    *counter = "put_api_requests.vsock";
    if (auto r = parse(); !r) return fault(400, r.message());
    auto v = vsock_from(j);
    if (!v) return fault(400, v.message());
    return from(controller_->set_vsock(std::move(*v)));
  }
  if (path == "/actions") {
    if (!put) return wrong_method("PUT");
    *counter = "put_api_requests.actions";
    if (auto r = parse(); !r) return fault(400, r.message());
    Fields f(j, "actions");
    if (auto r = f.only({"action_type"}); !r) return fault(400, r.message());
    auto type = f.opt_enum("action_type", {"InstanceStart", "FlushMetrics", "SendCtrlAltDel"});
    if (!type) return fault(400, type.message());
    if (!*type) return fault(400, "missing field `action_type` in actions");
    if (**type == "InstanceStart") return from(controller_->instance_start());
    if (**type == "FlushMetrics") return from(flush_metrics());
    return fault(400,
                 "SendCtrlAltDel is not supported: an Ember microVM has no i8042 keyboard controller (end the VM by "
                 "stopping its ember-vmm process, e.g. SIGTERM)");
  }
  if (path == "/vm") {
    if (!patch) return wrong_method("PATCH");
    *counter = "patch_api_requests.vm";
    if (auto r = parse(); !r) return fault(400, r.message());
    Fields f(j, "vm");
    if (auto r = f.only({"state"}); !r) return fault(400, r.message());
    auto state = f.opt_enum("state", {"Paused", "Resumed"});
    if (!state) return fault(400, state.message());
    if (!*state) return fault(400, "missing field `state` in vm");
    return from(**state == "Paused" ? controller_->pause() : controller_->resume());
  }
  if (path == "/vm/config") {
    if (!get) return wrong_method("GET");
    *counter = "get_api_requests.vm_config";
    const VmmConfig& c = controller_->config();
    json out{{"machine-config", machine_json(c.machine)}, {"drives", json::array()},
             {"network-interfaces", json::array()}};
    if (c.boot_source) {
      json b{{"kernel_image_path", c.boot_source->kernel_image_path}};
      if (c.boot_source->boot_args) b["boot_args"] = *c.boot_source->boot_args;
      if (c.boot_source->initrd_path) b["initrd_path"] = *c.boot_source->initrd_path;
      out["boot-source"] = b;
    } else {
      out["boot-source"] = nullptr;
    }
    out["vsock"] = c.vsock ? json{{"guest_cid", c.vsock->guest_cid}, {"uds_path", c.vsock->uds_path}} : json(nullptr);
    out["metrics"] = c.metrics ? json{{"metrics_path", c.metrics->metrics_path}} : json(nullptr);
    return ok_json(out);
  }
  if (path == "/snapshot/create") {
    if (!put) return wrong_method("PUT");
    *counter = "put_api_requests.snapshot_create";
    if (auto r = parse(); !r) return fault(400, r.message());
    auto s = snapshot_create_from(j);
    if (!s) return fault(400, s.message());
    return from(controller_->create_snapshot(*s));
  }
  if (path == "/snapshot/load") {
    if (!put) return wrong_method("PUT");
    *counter = "put_api_requests.snapshot_load";
    if (auto r = parse(); !r) return fault(400, r.message());
    auto s = snapshot_load_from(j);
    if (!s) return fault(400, s.message());
    return from(controller_->load_snapshot(*s));
  }
  if (path == "/metrics") {
    if (!put) return wrong_method("PUT");
    *counter = "put_api_requests.metrics";
    if (auto r = parse(); !r) return fault(400, r.message());
    auto m = metrics_from(j);
    if (!m) return fault(400, m.message());
    if (metrics_configured())
      return fault(400, "Reinitialization of metrics is not allowed: metrics_path is already " +
                            controller_->config().metrics->metrics_path);
    if (auto v = VmmController::validate_path("metrics_path", m->metrics_path); !v) return fault(400, v.message());
    if (auto o = metrics_->open(m->metrics_path); !o) return fault(400, o.message());
    return from(controller_->set_metrics(std::move(*m)));
  }
  auto with_id = [&](std::string_view prefix) {
    return path.size() > prefix.size() && path.substr(0, prefix.size()) == prefix &&
           path.find('/', prefix.size()) == std::string_view::npos;
  };
  if (with_id("/drives/")) {
    if (!put && !patch) return wrong_method("PUT, PATCH");
    *counter = put ? "put_api_requests.drive" : "patch_api_requests.drive";
    return fault(400, kNoDrives);
  }
  if (with_id("/network-interfaces/")) {
    if (!put && !patch) return wrong_method("PUT, PATCH");
    *counter = put ? "put_api_requests.network" : "patch_api_requests.network";
    return fault(400, kNoNet);
  }
  counts_["api_server.unknown_path"]++;
  return fault(404, "Invalid request method and/or path: " + shown(method) + " " + shown(path));
}

Result<void> ApiHandlers::flush_metrics() {
  if (!metrics_configured()) return Error{"FlushMetrics: metrics are not configured: PUT /metrics first"};
  json line{{"utc_timestamp_ms", realtime_ms()}};
  line["api_server"] = json{{"requests", requests_}, {"failed", failed_}};
  for (const auto& [key, value] : counts_) {
    const auto dot = key.find('.');
    line[key.substr(0, dot)][key.substr(dot + 1)] = value;
  }
  json vmm{{"state", instance_state_name(controller_->state())}};
  if (controller_->state() == InstanceState::kExited) vmm["exit_status"] = controller_->exit_status();
  if (vm_metrics_) vm_metrics_(vmm);
  line["vmm"] = vmm;
  return metrics_->write_line(dump(line) + "\n");
}

Result<void> ApiHandlers::apply_config_file(std::string_view text) {
  json j;
  EMBER_TRY_VOID(parse_json_body(text, &j));
  Fields f(j, "the config file");
  EMBER_TRY_VOID(f.only({"boot-source", "machine-config", "vsock", "metrics", "drives", "network-interfaces",
                         "logger"}));
  auto section = [&](const char* key) -> Result<const json*> {
    auto r = f.opt_object(key);
    if (!r) return Error{"config file: " + r.message()};
    return r;
  };
  auto prefixed = [](const char* key, const Result<void>& r) -> Result<void> {
    if (r) return r;
    return Error{std::string("config file: ") + key + ": " + r.message()};
  };
  for (const char* list : {"drives", "network-interfaces"}) {
    const json* v = f.find(list);
    if (!v) continue;
    if (!v->is_array()) return Error{std::string("config file: `") + list + "` must be an array"};
    if (!v->empty()) return Error{std::string("config file: ") + (list[0] == 'd' ? kNoDrives : kNoNet)};
  }
  if (f.find("logger")) return Error{"config file: `logger` is not supported: ember-vmm logs to its stderr (-v for more)"};

  EMBER_TRY(const json* machine, section("machine-config"));
  if (machine) {
    auto p = machine_from(*machine, true);
    if (!p) return Error{"config file: " + p.message()};
    MachineSpec m;
    m.vcpu_count = static_cast<uint32_t>(*p->vcpu_count);
    m.mem_size_mib = *p->mem_size_mib;
    m.smt = p->smt.value_or(false);
    m.track_dirty_pages = p->track_dirty_pages.value_or(false);
    EMBER_TRY_VOID(prefixed("machine-config", controller_->put_machine_config(m)));
  }
  EMBER_TRY(const json* boot, section("boot-source"));
  if (!boot) return Error{"config file: missing `boot-source` (kernel_image_path, initrd_path)"};
  {
    auto b = boot_source_from(*boot);
    if (!b) return Error{"config file: " + b.message()};
    EMBER_TRY_VOID(prefixed("boot-source", controller_->set_boot_source(std::move(*b))));
  }
  EMBER_TRY(const json* vsock, section("vsock"));
  if (vsock) {
    auto v = vsock_from(*vsock);
    if (!v) return Error{"config file: " + v.message()};
    EMBER_TRY_VOID(prefixed("vsock", controller_->set_vsock(std::move(*v))));
  }
  EMBER_TRY(const json* metrics, section("metrics"));
  if (metrics) {
    auto m = metrics_from(*metrics);
    if (!m) return Error{"config file: " + m.message()};
    EMBER_TRY_VOID(prefixed("metrics", VmmController::validate_path("metrics_path", m->metrics_path)));
    EMBER_TRY_VOID(prefixed("metrics", metrics_->open(m->metrics_path)));
    EMBER_TRY_VOID(prefixed("metrics", controller_->set_metrics(std::move(*m))));
  }
  return Ok();
}

}  // namespace ember

#include "controller/http_api.h"

#include <regex>

#include "controller/function_spec.h"

namespace ember::controller {

using nlohmann::json;

namespace {

// Messages and bodies may quote what a client sent (a function name in the
// path, percent-decoded to any bytes): invalid UTF-8 is replaced, not thrown.
std::string to_json_text(const json& j, int indent = -1) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace) + "\n";
}

// The one place an outcome becomes an HTTP status.
int http_status(Outcome o) {
  switch (o) {
    case Outcome::kOk: return 200;
    case Outcome::kCreated: return 201;
    case Outcome::kRemoved: return 204;
    case Outcome::kBadRequest: return 400;
    case Outcome::kNotFound: return 404;
    case Outcome::kUnrunnable: return 422;
    case Outcome::kBusy: return 429;
    case Outcome::kInternal: return 500;
    case Outcome::kVmFailed: return 502;
    case Outcome::kTimeout: return 504;
  }
  return 500;
}

HttpReply error_reply(int status, const std::string& message) {
  HttpReply r;
  r.status = status;
  r.body = to_json_text(json{{"error", message}});
  return r;
}

HttpReply result_reply(const ApiResult& a) {
  HttpReply r;
  if (!a.error.empty()) {
    r = error_reply(http_status(a.outcome), a.error);
  } else {
    r.status = http_status(a.outcome);
    if (a.outcome != Outcome::kRemoved) r.body = to_json_text(a.body, 2);
  }
  if (a.retry_after_s) r.headers.emplace_back("Retry-After", std::to_string(a.retry_after_s));
  return r;
}

bool truthy(const std::string& v) { return v == "1" || v == "true" || v == "yes"; }

// A route of api/openapi-emberd.yaml, from the path alone.
enum class Route { kNone, kHealth, kMetrics, kFunctions, kFunction, kInvoke, kVms, kVm };

Route route_of(const std::string& path, std::string* arg) {
  static const std::regex function(R"(/v1/functions/([^/]+))"), invoke(R"(/v1/functions/([^/]+)/invoke)"),
      vm(R"(/v1/vms/([^/]+))");
  std::smatch m;
  if (path == "/healthz") return Route::kHealth;
  if (path == "/metrics") return Route::kMetrics;
  if (path == "/v1/functions") return Route::kFunctions;
  if (path == "/v1/vms") return Route::kVms;
  if (std::regex_match(path, m, invoke)) return *arg = m[1], Route::kInvoke;
  if (std::regex_match(path, m, function)) return *arg = m[1], Route::kFunction;
  if (std::regex_match(path, m, vm)) return *arg = m[1], Route::kVm;
  return Route::kNone;
}

// The deploy's settings: defaults, then X-Ember-Function (JSON), then the query.
Result<FunctionSpec> spec_of(const HttpRequest& req, const Config& cfg) {
  FunctionSpec spec = spec_defaults(cfg);
  const std::string header = req.header("X-Ember-Function");
  if (!header.empty()) {
    json j = json::parse(header, nullptr, false);
    if (j.is_discarded()) return Error{"X-Ember-Function: not valid JSON"};
    if (auto m = merge_spec_json(&spec, j, cfg); !m) return Error{"X-Ember-Function: " + m.message()};
  }
  for (const auto& [k, v] : req.query) EMBER_TRY_VOID(merge_spec_param(&spec, k, v, cfg));
  return spec;
}

}  // namespace

HttpApi::HttpApi(Controller& c, Logger& log) : c_(c), log_(log) {}

HttpApi::~HttpApi() { stop(); }

Result<int> HttpApi::bind() {
  const Config& cfg = c_.config();
  HttpServerOptions o;
  EMBER_TRY_VOID(split_listen(cfg.listen, &o.host, &o.port));
  o.invoke_threads = cfg.http_threads;
  o.control_threads = kControlThreads;
  o.queue = cfg.http_queue;
  o.connections = cfg.http_connections;
  o.idle_timeout_s = cfg.http_idle_timeout_s;
  o.body_memory = uint64_t{cfg.limits.http_body_memory_mib} << 20;
  o.error = error_reply;
  o.answered = [this](int status) {
    c_.metrics().http_requests(status).Increment();
  };
  o.log = [this](const std::string& line) { log_.debug("http: %s", line.c_str()); };
  auto s = HttpServer::start(
      std::move(o), [this](const HttpRequest& head) { return plan(head); },
      [this](HttpRequest& req) { return handle(req); });
  if (!s) return Error{s.message() + " (set listen: in the config, or --listen)"};
  server_ = std::move(*s);
  return server_->port();
}

void HttpApi::run() {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return stopped_; });
}

void HttpApi::stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
  if (server_) server_->stop();
}

HttpPlan HttpApi::plan(const HttpRequest& head) const {
  const Config& cfg = c_.config();
  HttpPlan p;
  auto refuse = [&](int status, const std::string& message) {
    p.answer = error_reply(status, message);
    return p;
  };
  std::string arg;
  const Route r = route_of(head.path, &arg);
  const std::string& m = head.method;
  if (r == Route::kNone) return refuse(404, "no such endpoint: " + m + " " + head.path);
  const bool allowed = (r == Route::kHealth || r == Route::kMetrics || r == Route::kFunctions || r == Route::kVms) ? m == "GET"
                       : r == Route::kFunction ? (m == "GET" || m == "PUT" || m == "DELETE")
                       : r == Route::kInvoke   ? m == "POST"
                                               : m == "DELETE";
  if (!allowed) return refuse(405, "method " + m + " is not allowed on " + head.path);
  if ((r == Route::kFunction || r == Route::kInvoke) && !valid_function_name(arg))
    return refuse(400, "invalid function name '" + arg + "': " + function_name_rule());
  switch (r) {
    case Route::kHealth:
    case Route::kMetrics:
      p.lane = HttpPlan::kNow;  // answered however busy the workers are
      return p;
    case Route::kInvoke:
      for (const auto& [k, v] : head.query)
        if (k != "stderr") return refuse(400, "unknown query parameter '" + k + "' (known: stderr)");
      p.lane = HttpPlan::kInvoke;
      p.max_body = cfg.limits.max_request_bytes;
      p.body_name = "request body";
      return p;
    case Route::kFunction:
      p.lane = HttpPlan::kControl;
      if (m == "PUT") {
        if (auto spec = spec_of(head, cfg); !spec) return refuse(400, spec.message());
        p.max_body = cfg.limits.max_image_bytes;
        p.body_name = "function body";
      }
      return p;
    default:
      p.lane = HttpPlan::kControl;
      return p;
  }
}

HttpReply HttpApi::handle(HttpRequest& req) {
  std::string arg;
  const Route r = route_of(req.path, &arg);
  switch (r) {
    case Route::kHealth: return result_reply(c_.health());
    case Route::kMetrics: {
      HttpReply reply;
      reply.body = c_.metrics_text();
      reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
      return reply;
    }
    case Route::kFunctions: return result_reply(c_.list_functions());
    case Route::kVms: return result_reply(c_.list_vms());
    case Route::kVm: return result_reply(c_.delete_vm(arg));
    case Route::kFunction: {
      if (req.method == "GET") return result_reply(c_.describe(arg));
      if (req.method == "DELETE") return result_reply(c_.remove(arg));
      auto spec = spec_of(req, c_.config());
      if (!spec) return error_reply(400, spec.message());
      if (req.body.empty()) return error_reply(400, "empty body: send the program (a static x86-64 ELF) or an Ember image");
      return result_reply(c_.deploy(arg, req.body, *spec));
    }
    case Route::kInvoke: {
      bool want_stderr = false;
      for (const auto& [k, v] : req.query) want_stderr = truthy(v);
      InvokeResult res = c_.invoke(arg, req.body);
      std::string().swap(req.body);
      HttpReply reply;
      reply.headers.emplace_back("X-Ember-Duration-Us", std::to_string(res.duration_us));
      if (!res.vm_id.empty()) reply.headers.emplace_back("X-Ember-VM", res.vm_id);
      if (res.retry_after_s) reply.headers.emplace_back("Retry-After", std::to_string(res.retry_after_s));
      if (res.outcome != Outcome::kOk) {
        HttpReply e = error_reply(http_status(res.outcome), res.error);
        e.headers = std::move(reply.headers);
        return e;
      }
      reply.headers.emplace_back("X-Ember-Exit-Code", std::to_string(res.exit_code));
      reply.headers.emplace_back("X-Ember-Pool", res.pool_hit ? "hit" : "miss");
      if (want_stderr) {
        json j = {{"exit_code", res.exit_code}, {"stdout", std::move(res.out)}, {"stderr", std::move(res.err)},
                  {"vm", res.vm_id},            {"duration_us", res.duration_us}, {"pool_hit", res.pool_hit}};
        reply.body = to_json_text(j);
      } else {
        reply.body = std::move(res.out);
        reply.content_type = "application/octet-stream";
      }
      return reply;
    }
    case Route::kNone: break;
  }
  return error_reply(404, "no such endpoint: " + req.method + " " + req.path);
}

}  // namespace ember::controller

#include "controller/http_api.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <regex>

#include "controller/function_spec.h"
#include "controller/http_task_queue.h"

namespace ember::controller {

using nlohmann::json;

namespace {

// Messages and bodies may quote what a client sent (a function name in the
// path, percent-decoded to any bytes): invalid UTF-8 is replaced, not thrown.
std::string to_json_text(const json& j, int indent = -1) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace) + "\n";
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(to_json_text(json{{"error", message}}), "application/json");
}

void send_result(httplib::Response& res, const ApiResult& r) {
  if (!r.error.empty()) {
    send_error(res, r.status, r.error);
  } else {
    res.status = r.status;
    if (r.status != 204) res.set_content(to_json_text(r.body, 2), "application/json");
  }
  if (r.retry_after_s) res.set_header("Retry-After", std::to_string(r.retry_after_s));
}

// Bodies up to this much past a route's cap are read and dropped before the
// 413, so that the client, still sending, reads the answer instead of a reset.
constexpr uint64_t kDrainBytes = 64ull << 20;

// Reads the body through the content reader, refusing more than `max` bytes
// (413) without buffering them; a declared Content-Length far above `max` is
// refused before a byte is read.
bool read_body(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader, uint64_t max,
               const char* what, std::string* body) {
  const std::string cl = req.get_header_value("Content-Length");
  if (cl.empty() && !req.has_header("Transfer-Encoding")) return true;  // no body at all
  if (!cl.empty()) {
    const unsigned long long n = std::strtoull(cl.c_str(), nullptr, 10);
    if (n > max + kDrainBytes) {
      send_error(res, 413, std::string(what) + " of " + cl + " bytes is larger than the " + std::to_string(max) + " allowed");
      res.set_header("Connection", "close");
      return false;
    }
    if (n <= max) body->reserve(n);
  }
  uint64_t dropped = 0;
  const bool ok = reader([&](const char* data, size_t len) {
    if (dropped || body->size() + len > max) {
      dropped += len;
      body->clear();
      return dropped <= kDrainBytes;
    }
    body->append(data, len);
    return true;
  });
  if (dropped) {
    body->clear();
    send_error(res, 413, std::string(what) + " is larger than the " + std::to_string(max) + " bytes allowed");
    res.set_header("Connection", "close");
    return false;
  }
  if (!ok) {
    send_error(res, 400, std::string("could not read the ") + what);
    res.set_header("Connection", "close");
    return false;
  }
  return true;
}

bool check_name(const std::string& name, httplib::Response& res) {
  if (valid_function_name(name)) return true;
  send_error(res, 400, "invalid function name '" + name + "': " + function_name_rule());
  return false;
}

bool truthy(const std::string& v) { return v == "1" || v == "true" || v == "yes"; }

}  // namespace

HttpApi::HttpApi(Controller& c, Logger& log) : c_(c), log_(log), svr_(std::make_unique<httplib::Server>()) {
  serve_with_bounded_queue(*svr_, c_.config().http_threads, c_.config().http_queue);
  // The largest body any route takes; each route enforces its own cap.
  svr_->set_payload_max_length(std::max<uint64_t>(c_.config().limits.max_image_bytes, c_.config().limits.max_request_bytes) +
                                kDrainBytes);
  svr_->set_keep_alive_max_count(10000);
  svr_->set_keep_alive_timeout(5);
  svr_->set_read_timeout(30, 0);
  svr_->set_write_timeout(30, 0);
  svr_->set_tcp_nodelay(true);
  routes();
}

HttpApi::~HttpApi() = default;

namespace {

// Debian's cpp-httplib is compiled with a listen backlog of 5: a burst of
// clients (50 invocations at once) would overflow it. listen() again on the
// bound socket raises the backlog; the socket is found by its port.
void raise_backlog(int port) {
  for (int fd = 3; fd < 1024; fd++) {
    int accepting = 0;
    socklen_t len = sizeof accepting;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || !accepting) continue;
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) != 0) continue;
    int p = -1;
    if (ss.ss_family == AF_INET) p = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    if (ss.ss_family == AF_INET6) p = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    if (p == port) ::listen(fd, 4096);
  }
}

}  // namespace

Result<int> HttpApi::bind() {
  std::string host;
  int port = 0;
  EMBER_TRY_VOID(split_listen(c_.config().listen, &host, &port));
  if (port == 0) {
    port = svr_->bind_to_any_port(host);
    if (port <= 0) return Error{"cannot listen on " + host + ": " + std::strerror(errno)};
  } else if (!svr_->bind_to_port(host, port)) {
    return Error{"cannot listen on " + c_.config().listen + ": " + std::strerror(errno) + " (set listen: in the config, or --listen)"};
  }
  raise_backlog(port);
  return port;
}

void HttpApi::run() { svr_->listen_after_bind(); }

void HttpApi::stop() { svr_->stop(); }

void HttpApi::routes() {
  auto& s = *svr_;
  Controller& c = c_;
  const Config& cfg = c_.config();

  // No route serves byte ranges. cpp-httplib would honour a Range: header on
  // every answer, building each requested part (multipart) in memory: 1,000
  // ranges of "0-" make a 1 MiB answer a 1 GiB one. The request object is
  // the server's own (non-const) one; only the handler type is const.
  s.set_pre_routing_handler([](const httplib::Request& req, httplib::Response&) {
    const_cast<httplib::Request&>(req).ranges.clear();
    return httplib::Server::HandlerResponse::Unhandled;
  });

  s.Get("/healthz", [&c](const httplib::Request&, httplib::Response& res) { send_result(res, c.health()); });

  s.Get("/metrics", [&c](const httplib::Request&, httplib::Response& res) {
    res.set_content(c.metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
  });

  s.Get("/v1/functions", [&c](const httplib::Request&, httplib::Response& res) { send_result(res, c.list_functions()); });

  s.Get(R"(/v1/functions/([^/]+))", [&c](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    if (!check_name(name, res)) return;
    send_result(res, c.describe(name));
  });

  s.Delete(R"(/v1/functions/([^/]+))", [&c](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    if (!check_name(name, res)) return;
    send_result(res, c.remove(name));
  });

  s.Put(R"(/v1/functions/([^/]+))",
        [&c, &cfg](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
          const std::string name = req.matches[1];
          if (!check_name(name, res)) return;
          FunctionSpec spec = spec_defaults(cfg);
          const std::string header = req.get_header_value("X-Ember-Function");
          if (!header.empty()) {
            json j = json::parse(header, nullptr, false);
            if (j.is_discarded()) return send_error(res, 400, "X-Ember-Function: not valid JSON");
            if (auto m = merge_spec_json(&spec, j, cfg); !m) return send_error(res, 400, "X-Ember-Function: " + m.message());
          }
          for (const auto& [k, v] : req.params)
            if (auto m = merge_spec_param(&spec, k, v, cfg); !m) return send_error(res, 400, m.message());
          std::string body;
          if (!read_body(req, res, reader, cfg.limits.max_image_bytes, "function body", &body)) return;
          if (body.empty())
            return send_error(res, 400, "empty body: send the program (a static x86-64 ELF) or an Ember image");
          send_result(res, c.deploy(name, body, spec));
        });

  s.Post(R"(/v1/functions/([^/]+)/invoke)",
         [&c, &cfg](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
           const std::string name = req.matches[1];
           if (!check_name(name, res)) return;
           for (const auto& [k, v] : req.params)
             if (k != "stderr") return send_error(res, 400, "unknown query parameter '" + k + "' (known: stderr)");
           const bool want_stderr = truthy(req.get_param_value("stderr"));
           std::string input;
           if (!read_body(req, res, reader, cfg.limits.max_request_bytes, "request body", &input)) return;
           InvokeResult r = c.invoke(name, input);
           res.set_header("X-Ember-Duration-Us", std::to_string(r.duration_us));
           if (!r.vm_id.empty()) res.set_header("X-Ember-VM", r.vm_id);
           if (r.retry_after_s) res.set_header("Retry-After", std::to_string(r.retry_after_s));
           if (r.status != 200) return send_error(res, r.status, r.error);
           res.set_header("X-Ember-Exit-Code", std::to_string(r.exit_code));
           res.set_header("X-Ember-Pool", r.pool_hit ? "hit" : "miss");
           if (want_stderr) {
             json j = {{"exit_code", r.exit_code}, {"stdout", r.out},   {"stderr", r.err},
                       {"vm", r.vm_id},            {"duration_us", r.duration_us}, {"pool_hit", r.pool_hit}};
             res.set_content(to_json_text(j), "application/json");
           } else {
             res.set_content(r.out, "application/octet-stream");
           }
         });

  s.Get("/v1/vms", [&c](const httplib::Request&, httplib::Response& res) { send_result(res, c.list_vms()); });

  s.Delete(R"(/v1/vms/([^/]+))", [&c](const httplib::Request& req, httplib::Response& res) {
    send_result(res, c.delete_vm(req.matches[1]));
  });

  // Unknown paths and methods: JSON errors too (httplib calls this for every
  // status >= 400; bodies already set are kept).
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      // The paths of api/openapi-emberd.yaml: another method there is 405.
      static const std::regex known(R"(/healthz|/metrics|/v1/functions|/v1/vms|/v1/functions/[^/]+(/invoke)?|/v1/vms/[^/]+)");
      const std::string& p = req.path;
      if (std::regex_match(p, known)) return send_error(res, 405, "method " + req.method + " is not allowed on " + p);
      return send_error(res, 404, "no such endpoint: " + req.method + " " + p);
    }
    if (res.status == 413) return send_error(res, 413, "request body too large");
    if (res.status == 400) return send_error(res, 400, "malformed HTTP request (a POST or PUT needs Content-Length or a chunked body)");
    send_error(res, res.status, "HTTP " + std::to_string(res.status));
  });

  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = std::string("internal error: ") + e.what();
    } catch (...) {
    }
    send_error(res, 500, what);
  });

  s.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    c_.metrics().http_requests(res.status).Increment();
    if (log_.enabled(LogLevel::kDebug)) log_.debug("%s %s -> %d", req.method.c_str(), req.path.c_str(), res.status);
  });
}

}  // namespace ember::controller

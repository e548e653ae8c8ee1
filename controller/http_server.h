// emberd's HTTP front door (libmicrohttpd). One event-loop thread reads
// every connection's request head and body and writes every answer, so a
// slow or idle client costs a socket, never a thread; the work of a request
// runs on a worker lane chosen from its head, and the connection is
// suspended meanwhile. A request that finds its lane full, or whose body
// would not fit the memory kept for bodies, is answered 429 from its head,
// before a byte of its body is read. Requests planned `kNow` (health,
// metrics) are answered on the event loop itself: they answer however busy
// the workers are.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"

namespace ember::controller {

struct HttpRequest {
  std::string method;
  std::string path;  // percent-decoded, without the query
  std::vector<std::pair<std::string, std::string>> query;    // decoded, in order
  std::vector<std::pair<std::string, std::string>> headers;  // as sent
  std::string body;
  // A header's value ("" if absent); names compare case-insensitively.
  std::string header(const std::string& name) const;
};

struct HttpReply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

// How to serve a request, decided from its head.
struct HttpPlan {
  enum Lane { kNow, kControl, kInvoke };
  Lane lane = kNow;
  uint64_t max_body = 0;       // larger bodies: 413
  std::string body_name;       // "request body", in the 413's words
  std::optional<HttpReply> answer;  // set: answered at once, the body unread
};

struct HttpServerOptions {
  std::string host;           // "127.0.0.1", "::1", "" (every interface)
  int port = 0;               // 0: any free port
  size_t control_threads = 8, invoke_threads = 128;
  size_t queue = 1024;        // requests waiting for a worker, per lane
  unsigned connections = 10000;
  unsigned idle_timeout_s = 30;
  uint64_t body_memory = 1ull << 30;  // request and answer bodies held at once
  // Builds an error answer (emberd's JSON errors).
  std::function<HttpReply(int status, const std::string& message)> error;
  std::function<void(int status)> answered;  // each answer, for metrics
  std::function<void(const std::string&)> log;  // libmicrohttpd's own messages
};

class HttpServer {
 public:
  using Planner = std::function<HttpPlan(const HttpRequest& head)>;
  using Handler = std::function<HttpReply(HttpRequest& request)>;

  // Listens and serves on a thread of its own until stop().
  static Result<std::unique_ptr<HttpServer>> start(HttpServerOptions options, Planner plan, Handler handle);
  ~HttpServer();
  int port() const { return port_; }
  // Stops accepting, lets the requests being worked on finish and answers
  // them, then closes every connection.
  void stop();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl, int port);
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace ember::controller

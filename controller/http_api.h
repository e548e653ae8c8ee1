// emberd's REST API: routes HTTP requests (http_server.h) to Controller
// calls. Described in api/openapi-emberd.yaml. Errors are JSON {"error": "..."}.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "base/result.h"
#include "controller/controller.h"
#include "controller/http_server.h"
#include "controller/log.h"

namespace ember::controller {

class HttpApi {
 public:
  HttpApi(Controller& c, Logger& log);
  ~HttpApi();

  // Listens on cfg.listen and starts serving; returns the port actually
  // bound (port 0 picks one).
  Result<int> bind();
  // Returns once stop() has been called.
  void run();
  // Stops serving: new connections are refused, requests at work finish.
  void stop();

 private:
  HttpPlan plan(const HttpRequest& head) const;
  HttpReply handle(HttpRequest& req);
  Controller& c_;
  Logger& log_;
  std::unique_ptr<HttpServer> server_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
};

}  // namespace ember::controller

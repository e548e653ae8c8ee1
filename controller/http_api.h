// emberd's REST API (cpp-httplib): translates HTTP into Controller calls.
// Described in api/openapi-emberd.yaml. Errors are JSON {"error": "..."}.
#pragma once

#include <memory>
#include <string>

#include "controller/controller.h"
#include "controller/log.h"
#include "vmm/result.h"

namespace httplib {
class Server;
}

namespace ember::controller {

class HttpApi {
 public:
  HttpApi(Controller& c, Logger& log);
  ~HttpApi();

  // Binds cfg.listen; returns the port actually bound (port 0 picks one).
  Result<int> bind();
  // Serves until stop() (blocks).
  void run();
  void stop();

 private:
  void routes();
  Controller& c_;
  Logger& log_;
  std::unique_ptr<httplib::Server> svr_;
};

}  // namespace ember::controller

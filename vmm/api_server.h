// ApiServer: HTTP/1.1 on a Unix socket with libmicrohttpd in external-epoll
// mode, driven by the VMM's own event loop: no thread of its own. The loop
// polls fd() (an epoll set holding MHD's epoll fd and a timerfd for MHD's
// connection timeouts) and calls run() when it is readable; run() never
// blocks. Handlers run on the event loop thread, one request at a time.
//
// Hostile clients: bodies over max_body bytes are answered 413 (from the
// Content-Length, before the body is read; chunked bodies once they pass the
// cap), connections idle for idle_timeout_s are closed, at most
// connection_limit are open at once (the rest wait in the listen backlog).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/fd.h"
#include "base/result.h"
#include "vmm/api_handlers.h"
#include "vmm/log.h"

struct MHD_Daemon;
struct MHD_Connection;

namespace ember {

struct ApiServerOptions {
  std::string socket_path;
  unsigned connection_limit = 64;
  unsigned idle_timeout_s = 5;
  size_t max_body = kApiMaxBody;
  const Log* log = nullptr;  // MHD's own messages, verbose mode only
};

class ApiServer {
 public:
  using Handler = std::function<HttpResponse(std::string_view method, std::string_view path, std::string_view body)>;
  // For requests refused before they reach the handler (413).
  using Refusal = std::function<HttpResponse(int status, const std::string& message)>;

  // Binds the socket (a stale socket file nobody listens on is replaced; a
  // live one is an error), listens, starts the daemon.
  static Result<std::unique_ptr<ApiServer>> start(const ApiServerOptions& options, Handler handler, Refusal refusal);
  ~ApiServer();  // stops the daemon, closes every connection, unlinks the socket

  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  int fd() const { return epoll_.get(); }
  void run();

  unsigned connections() const;
  const std::string& socket_path() const { return options_.socket_path; }

 private:
  struct Pending;
  explicit ApiServer(ApiServerOptions options) : options_(std::move(options)) {}
  void schedule();
  int on_request(MHD_Connection* c, const char* url, const char* method, const char* upload_data,
                 size_t* upload_data_size, void** con_cls);
  int reply(MHD_Connection* c, const HttpResponse& r);

  friend struct ApiServerCallbacks;  // libmicrohttpd's C callbacks (api_server.cc)

  ApiServerOptions options_;
  Handler handler_;
  Refusal refusal_;
  Fd listen_;
  Fd epoll_;
  Fd timer_;
  MHD_Daemon* daemon_ = nullptr;
  bool unlink_on_exit_ = false;
  bool listen_watched_ = false;  // the listen socket is in epoll_ too (see schedule())
};

// Binds and listens on a Unix stream socket at `path` (non-blocking,
// close-on-exec). Exposed for the vsock device's host side and tests.
Result<Fd> listen_unix(const std::string& path, int backlog = 128);

}  // namespace ember

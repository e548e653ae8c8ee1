#include "controller/http_server.h"

#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <thread>

#include "base/fd.h"
#include "controller/worker_pool.h"

namespace ember::controller {

std::string HttpRequest::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (::strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  return "";
}

namespace {

// Bodies up to this much past a route's cap are read and dropped before the
// 413, so that the client, still sending, reads the answer instead of a reset.
constexpr uint64_t kDrainBytes = 64ull << 20;
// A chunked body's memory is reserved in steps of this much as it grows.
constexpr uint64_t kReserveStep = 256 << 10;

Result<Fd> listen_tcp(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res); rc != 0)
    return Error{"cannot listen on " + host + ":" + service + ": " + ::gai_strerror(rc)};
  std::string last = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    Fd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
    if (!fd.valid()) continue;
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // A backlog that holds a burst of clients while the event loop accepts.
    if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd.get(), 4096) == 0) {
      ::freeaddrinfo(res);
      return fd;
    }
    last = std::strerror(errno);
  }
  ::freeaddrinfo(res);
  return Error{"cannot listen on " + host + ":" + service + ": " + last};
}

int bound_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return -1;
}

MHD_Result collect(void* into, MHD_ValueKind, const char* key, const char* value) {
  static_cast<std::vector<std::pair<std::string, std::string>>*>(into)->emplace_back(key ? key : "", value ? value : "");
  return MHD_YES;
}

}  // namespace

// One request on a connection, from its head to its answer's last byte.
struct Pending {
  HttpServer::Impl* server;
  MHD_Connection* conn;
  HttpRequest req;
  HttpPlan plan;
  uint64_t reserved = 0;  // of body_memory
  uint64_t dropped = 0;   // body bytes read and thrown away
  bool too_large = false, no_memory = false, dispatched = false;
  std::atomic<bool> ready{false};  // `reply` is set (by a worker, then the connection is resumed)
  HttpReply reply;
  ~Pending();
};

struct HttpServer::Impl {
  HttpServerOptions o;
  Planner plan;
  Handler handle;
  Fd listen;
  MHD_Daemon* daemon = nullptr;
  std::unique_ptr<WorkerPool> control, invoke;
  std::atomic<uint64_t> body_bytes{0};
  std::atomic<int64_t> pending{0};

  bool reserve(uint64_t n, bool force = false) {
    uint64_t cur = body_bytes.load();
    do {
      if (!force && cur + n > o.body_memory) return false;
    } while (!body_bytes.compare_exchange_weak(cur, cur + n));
    return true;
  }
  void release(uint64_t n) { body_bytes -= n; }

  HttpReply busy(const std::string& why) {
    HttpReply r = o.error(429, why);
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  HttpReply no_room_for_bodies() {
    return busy("emberd holds as many request and answer bodies as it may (" + std::to_string(o.body_memory >> 20) +
                " MiB, limits.http_body_memory_mib); try again");
  }
  WorkerPool* lane_of(const HttpPlan& plan) {
    return plan.lane == HttpPlan::kInvoke ? invoke.get() : plan.lane == HttpPlan::kControl ? control.get() : nullptr;
  }
  // The request's work; an exception is a 500, never a dropped connection.
  HttpReply run(HttpRequest& req) {
    try {
      return handle(req);
    } catch (const std::exception& e) {
      return o.error(500, std::string("internal error: ") + e.what());
    }
  }

  // Queues `p->reply` as the answer; `close` when the client must not send
  // its next request on this connection (its body was not read).
  MHD_Result answer(Pending* p, bool close) {
    HttpReply& r = p->reply;
    // The body stays in `p` until the request completes: no copy.
    MHD_Response* resp = MHD_create_response_from_buffer(r.body.size(), r.body.data(), MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    if (!r.body.empty() || r.status != 204) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type.c_str());
    for (const auto& [k, v] : r.headers) MHD_add_response_header(resp, k.c_str(), v.c_str());
    if (close) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    const MHD_Result ok = MHD_queue_response(p->conn, static_cast<unsigned>(r.status), resp);
    MHD_destroy_response(resp);
    if (o.answered) o.answered(r.status);
    return ok;
  }
  MHD_Result answer_now(Pending* p, HttpReply r, bool close) {
    p->reply = std::move(r);
    return answer(p, close);
  }

  // On a worker: the request's work, then its answer goes back to the loop.
  void work(Pending* p) {
    HttpReply r = run(p->req);
    std::string().swap(p->req.body);
    release(p->reserved);
    // Counted even past the budget: the work is done and its answer is
    // owed; new requests see the memory in use and wait.
    p->reserved = r.body.size();
    reserve(p->reserved, true);
    p->reply = std::move(r);
    p->ready = true;
    MHD_resume_connection(p->conn);
  }

  MHD_Result on_head(Pending* p) {
    p->plan = plan(p->req);
    if (p->plan.answer) return answer_now(p, std::move(*p->plan.answer), false);
    WorkerPool* lane = lane_of(p->plan);
    if (lane && lane->full())
      return answer_now(p,
                        busy("emberd is saturated: all " + std::to_string(lane->threads()) + " of its " +
                             (lane == invoke.get() ? "invocation" : "control") + " threads are busy and " +
                             std::to_string(o.queue) + " requests wait (http_threads, http_queue); try again"),
                        true);
    const std::string cl = p->req.header("Content-Length");
    if (cl.empty()) return MHD_YES;  // none, or chunked: reserved as it comes
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = std::strtoull(cl.c_str(), &end, 10);
    if (errno || end == cl.c_str() || *end) return answer_now(p, o.error(400, "Content-Length: not a number"), true);
    const std::string max = std::to_string(p->plan.max_body);
    if (n > p->plan.max_body + kDrainBytes)
      return answer_now(p, o.error(413, p->plan.body_name + " of " + cl + " bytes is larger than the " + max + " allowed"), true);
    if (n > p->plan.max_body) {
      p->too_large = true;
      return MHD_YES;
    }
    if (!reserve(n)) return answer_now(p, no_room_for_bodies(), true);
    p->reserved = n;
    p->req.body.reserve(n);
    return MHD_YES;
  }

  MHD_Result on_data(Pending* p, const char* data, size_t n) {
    if (!p->too_large && !p->no_memory && p->req.body.size() + n > p->plan.max_body) {
      p->too_large = true;
      p->dropped = p->req.body.size();
      std::string().swap(p->req.body);
    }
    if (!p->too_large && !p->no_memory && p->req.body.size() + n > p->reserved) {
      const uint64_t more = std::max<uint64_t>(n, kReserveStep);
      if (reserve(more)) {
        p->reserved += more;
      } else {
        p->no_memory = true;
        p->dropped = p->req.body.size();
        std::string().swap(p->req.body);
      }
    }
    if (p->too_large || p->no_memory) {
      p->dropped += n;
      return p->dropped <= p->plan.max_body + kDrainBytes ? MHD_YES : MHD_NO;  // one that does not stop: dropped
    }
    p->req.body.append(data, n);
    return MHD_YES;
  }

  MHD_Result on_body_done(Pending* p) {
    if (p->ready) return answer(p, false);
    if (p->dispatched) return MHD_YES;
    if (p->too_large)
      return answer_now(p, o.error(413, p->plan.body_name + " is larger than the " + std::to_string(p->plan.max_body) + " bytes allowed"),
                        true);
    if (p->no_memory) return answer_now(p, no_room_for_bodies(), true);
    WorkerPool* lane = lane_of(p->plan);
    if (!lane) return answer_now(p, run(p->req), false);  // kNow: here, on the event loop
    p->dispatched = true;
    MHD_suspend_connection(p->conn);
    if (!lane->try_post([this, p] { work(p); })) {
      p->reply = busy("emberd is saturated (http_threads, http_queue); try again");
      p->ready = true;
      MHD_resume_connection(p->conn);
    }
    return MHD_YES;
  }

  static MHD_Result access(void* cls, MHD_Connection* c, const char* url, const char* method, const char*,
                           const char* upload_data, size_t* upload_data_size, void** con_cls) {
    auto* self = static_cast<Impl*>(cls);
    auto* p = static_cast<Pending*>(*con_cls);
    if (!p) {
      p = new Pending{self, c};
      *con_cls = p;
      self->pending++;
      p->req.method = method;
      p->req.path = url;
      MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect, &p->req.query);
      MHD_get_connection_values(c, MHD_HEADER_KIND, collect, &p->req.headers);
      return self->on_head(p);
    }
    if (*upload_data_size) {
      const size_t n = *upload_data_size;
      *upload_data_size = 0;
      return self->on_data(p, upload_data, n);
    }
    return self->on_body_done(p);
  }

  static void completed(void*, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
    delete static_cast<Pending*>(*con_cls);
    *con_cls = nullptr;
  }

  // Answers go out as written, not after a delayed ACK (40 ms).
  static void connection_event(void*, MHD_Connection* c, void**, MHD_ConnectionNotificationCode code) {
    if (code != MHD_CONNECTION_NOTIFY_STARTED) return;
    const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    const int one = 1;
    if (info) ::setsockopt(info->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }

  static void mhd_log(void* cls, const char* fmt, va_list ap) {
    auto* self = static_cast<Impl*>(cls);
    if (!self->o.log) return;
    char buf[512];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = std::strlen(buf);
    while (n && buf[n - 1] == '\n') buf[--n] = 0;
    self->o.log(buf);
  }
};

Pending::~Pending() {
  server->release(reserved);
  server->pending--;
}

Result<std::unique_ptr<HttpServer>> HttpServer::start(HttpServerOptions options, Planner plan, Handler handle) {
  auto impl = std::make_unique<Impl>();
  impl->o = std::move(options);
  impl->plan = std::move(plan);
  impl->handle = std::move(handle);
  EMBER_TRY(impl->listen, listen_tcp(impl->o.host, impl->o.port));
  const int port = bound_port(impl->listen.get());
  try {
    impl->control = std::make_unique<WorkerPool>(impl->o.control_threads, impl->o.queue);
    impl->invoke = std::make_unique<WorkerPool>(impl->o.invoke_threads, impl->o.queue);
  } catch (const std::system_error& e) {  // the host is out of tasks
    return Error{std::string("cannot start the HTTP worker threads: ") + e.what()};
  }
  const unsigned flags =
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
  impl->daemon = MHD_start_daemon(
      flags, 0, nullptr, nullptr, &Impl::access, impl.get(),
      MHD_OPTION_EXTERNAL_LOGGER, &Impl::mhd_log, impl.get(),  // first, or MHD complains on stderr
      MHD_OPTION_LISTEN_SOCKET, static_cast<MHD_socket>(impl->listen.get()),
      MHD_OPTION_CONNECTION_LIMIT, impl->o.connections,
      MHD_OPTION_CONNECTION_TIMEOUT, impl->o.idle_timeout_s,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<size_t>(64 * 1024),
      MHD_OPTION_NOTIFY_COMPLETED, &Impl::completed, nullptr,
      MHD_OPTION_NOTIFY_CONNECTION, &Impl::connection_event, nullptr,
      MHD_OPTION_END);
  if (!impl->daemon) return Error{"libmicrohttpd: cannot serve on port " + std::to_string(port)};
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl), port));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl, int port) : impl_(std::move(impl)), port_(port) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::stop() {
  if (!impl_ || !impl_->daemon) return;
  // No new connections (the listening socket is ours to close); the work
  // under way finishes and its connections are resumed with their answers.
  const MHD_socket taken = MHD_quiesce_daemon(impl_->daemon);
  if (taken != MHD_INVALID_SOCKET) impl_->listen.reset();
  impl_->control->stop();
  impl_->invoke->stop();
  // Give the answers a moment to be written before every connection closes.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (impl_->pending.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  MHD_stop_daemon(impl_->daemon);
  impl_->daemon = nullptr;
}

}  // namespace ember::controller

#include "vmm/api_server.h"

#include <fcntl.h>
#include <microhttpd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace ember {

namespace {

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty()) return Error{"empty Unix socket path"};
  if (path.size() >= sizeof addr.sun_path)
    return Error{"Unix socket path " + path + " is too long (" + std::to_string(path.size()) + " bytes, max " +
                 std::to_string(sizeof addr.sun_path - 1) + ")"};
  if (path.find('\0') != std::string::npos) return Error{"Unix socket path contains a NUL byte"};
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// A socket file left behind by a VMM that died is replaced; one that a live
// process still listens on is not.
Result<void> clear_stale_socket(const std::string& path, const sockaddr_un& addr) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok();
    return errno_error("API socket " + path);
  }
  if (!S_ISSOCK(st.st_mode)) return Error{"API socket " + path + ": exists and is not a socket"};
  Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe.valid()) return errno_error("socket");
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0)
    return Error{"API socket " + path + " is in use by another process"};
  if (errno != ECONNREFUSED) return errno_error("API socket " + path);
  if (::unlinkat(AT_FDCWD, path.c_str(), 0) != 0 && errno != ENOENT)
    return errno_error("removing stale API socket " + path);
  return Ok();
}

}  // namespace

Result<Fd> listen_unix(const std::string& path, int backlog) {
  EMBER_TRY(sockaddr_un addr, unix_address(path));
  EMBER_TRY_VOID(clear_stale_socket(path, addr));
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return errno_error("socket");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) return errno_error("bind " + path);
  if (::listen(fd.get(), backlog) != 0) {
    const int err = errno;
    ::unlinkat(AT_FDCWD, path.c_str(), 0);
    return errno_error("listen " + path, err);
  }
  return fd;
}

// One request in flight on a connection.
struct ApiServer::Pending {
  std::string body;
  bool too_large = false;
  bool replied = false;
  size_t discarded = 0;
};

struct ApiServerCallbacks {
  static MHD_Result access(void* cls, MHD_Connection* c, const char* url, const char* method, const char*,
                           const char* upload_data, size_t* upload_data_size, void** con_cls) {
    return static_cast<ApiServer*>(cls)->on_request(c, url, method, upload_data, upload_data_size, con_cls) ? MHD_YES
                                                                                                            : MHD_NO;
  }
  static void completed(void*, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
    delete static_cast<ApiServer::Pending*>(*con_cls);
    *con_cls = nullptr;
  }
  static void log(void* cls, const char* fmt, va_list ap) {
    const Log* log = static_cast<const ApiServer*>(cls)->options_.log;
    if (!log || !log->verbose()) return;
    char buf[512];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = std::strlen(buf);
    while (n && buf[n - 1] == '\n') buf[--n] = 0;
    log->debug("api: %s", buf);
  }
};

Result<std::unique_ptr<ApiServer>> ApiServer::start(const ApiServerOptions& options, Handler handler,
                                                    Refusal refusal) {
  std::unique_ptr<ApiServer> s(new ApiServer(options));
  s->handler_ = std::move(handler);
  s->refusal_ = std::move(refusal);
  EMBER_TRY(s->listen_, listen_unix(options.socket_path));
  s->unlink_on_exit_ = true;

  // External polling (no MHD thread) through MHD's epoll set; TURBO: accept4
  // with the flags set, no shutdown() before close.
  const unsigned flags = MHD_USE_EPOLL | MHD_USE_TURBO | MHD_USE_ERROR_LOG;
  s->daemon_ = MHD_start_daemon(
      flags, 0, nullptr, nullptr, &ApiServerCallbacks::access, s.get(),
      MHD_OPTION_EXTERNAL_LOGGER, &ApiServerCallbacks::log, s.get(),  // first, or MHD complains on stderr
      MHD_OPTION_LISTEN_SOCKET, static_cast<MHD_socket>(s->listen_.get()),
      MHD_OPTION_CONNECTION_LIMIT, static_cast<unsigned>(options.connection_limit),
      MHD_OPTION_CONNECTION_TIMEOUT, static_cast<unsigned>(options.idle_timeout_s),
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<size_t>(16 * 1024),
      MHD_OPTION_NOTIFY_COMPLETED, &ApiServerCallbacks::completed, nullptr,
      MHD_OPTION_END);
  if (!s->daemon_) return Error{"libmicrohttpd: cannot start the API server on " + options.socket_path};

  const MHD_DaemonInfo* info = MHD_get_daemon_info(s->daemon_, MHD_DAEMON_INFO_EPOLL_FD);
  if (!info || info->epoll_fd < 0) return Error{"libmicrohttpd: no epoll fd"};
  s->epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!s->epoll_.valid()) return errno_error("epoll_create1");
  s->timer_ = Fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!s->timer_.valid()) return errno_error("timerfd_create");
  for (int fd : {info->epoll_fd, s->timer_.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(s->epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return errno_error("epoll_ctl");
  }
  s->schedule();
  return s;
}

ApiServer::~ApiServer() {
  if (daemon_) {
    // The listen socket is ours: MHD closes it in MHD_stop_daemon unless
    // quiesced first, so take it back to close it exactly once.
    const MHD_socket taken = MHD_quiesce_daemon(daemon_);
    if (taken != MHD_INVALID_SOCKET) listen_.release();
    MHD_stop_daemon(daemon_);
    if (taken != MHD_INVALID_SOCKET) ::close(taken);
  }
  if (unlink_on_exit_) ::unlinkat(AT_FDCWD, options_.socket_path.c_str(), 0);
}

unsigned ApiServer::connections() const {
  const MHD_DaemonInfo* info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
  return info ? info->num_connections : 0;
}

void ApiServer::run() {
  uint64_t expirations;
  while (::read(timer_.get(), &expirations, sizeof expirations) > 0) {
  }
  MHD_run(daemon_);
  schedule();
}

// Arms the timerfd for MHD's next deadline: a connection timeout, or "now"
// when MHD has more ready work than one MHD_run() took (edge-triggered
// connections it has not finished).
//
// And watches the listen socket itself while below the connection limit:
// at the limit MHD takes the listen socket out of its epoll set and puts it
// back only in a later MHD_run(), which nothing would trigger once the
// connections have gone (waiting clients would hang in the backlog). At the
// limit it is not watched, so pending connections do not spin the loop.
void ApiServer::schedule() {
  const bool below_limit = connections() < options_.connection_limit;
  if (below_limit != listen_watched_) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listen_.get();
    if (::epoll_ctl(epoll_.get(), below_limit ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, listen_.get(), &ev) == 0)
      listen_watched_ = below_limit;
  }
  MHD_UNSIGNED_LONG_LONG ms = 0;
  itimerspec its{};
  if (MHD_get_timeout(daemon_, &ms) == MHD_YES) {
    if (ms == 0) {
      its.it_value.tv_nsec = 1;  // fire at once; 0 would disarm
    } else {
      its.it_value.tv_sec = static_cast<time_t>(ms / 1000);
      its.it_value.tv_nsec = static_cast<long>((ms % 1000) * 1000000);
    }
  }
  ::timerfd_settime(timer_.get(), 0, &its, nullptr);
}

int ApiServer::reply(MHD_Connection* c, const HttpResponse& r) {
  MHD_Response* resp =
      MHD_create_response_from_buffer(r.body.size(), const_cast<char*>(r.body.data()), MHD_RESPMEM_MUST_COPY);
  if (!resp) return 0;
  if (!r.body.empty()) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  if (!r.allow.empty()) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r.allow.c_str());
  const MHD_Result ok = MHD_queue_response(c, static_cast<unsigned>(r.status), resp);
  MHD_destroy_response(resp);
  return ok == MHD_YES;
}

int ApiServer::on_request(MHD_Connection* c, const char* url, const char* method, const char* upload_data,
                          size_t* upload_data_size, void** con_cls) {
  auto* p = static_cast<Pending*>(*con_cls);
  if (!p) {
    // Headers are in: refuse an announced oversized body before reading it.
    p = new Pending;
    *con_cls = p;
    if (const char* len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
      char* end = nullptr;
      errno = 0;
      const unsigned long long n = std::strtoull(len, &end, 10);
      if (errno != 0 || end == len || n > options_.max_body) {
        p->too_large = true;
        p->replied = true;
        return reply(c, refusal_(413, "Request payload with size " + std::string(len).substr(0, 24) +
                                          " is larger than the limit of " + std::to_string(options_.max_body) +
                                          " bytes allowed by the server"));
      }
    }
    return 1;
  }
  if (*upload_data_size != 0) {
    const size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (!p->too_large && p->body.size() + n > options_.max_body) {
      p->too_large = true;
      p->discarded = p->body.size();
      p->body = std::string();
    }
    if (p->too_large) {
      p->discarded += n;
      if (p->replied) return 1;
      // A chunked body that does not stop: drop the connection.
      return p->discarded <= 16 * options_.max_body;
    }
    p->body.append(upload_data, n);
    return 1;
  }
  if (p->replied) return 1;  // the 413 is on its way
  p->replied = true;
  if (p->too_large)
    return reply(c, refusal_(413, "Request payload with size " + std::to_string(p->discarded) +
                                      " is larger than the limit of " + std::to_string(options_.max_body) +
                                      " bytes allowed by the server"));
  return reply(c, handler_(method, url, p->body));
}

}  // namespace ember

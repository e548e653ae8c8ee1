// For the VMM API tests: an HTTP client on a Unix socket (libcurl,
// CURLOPT_UNIX_SOCKET_PATH; one handle per client, so requests reuse the
// connection like a real client's), and an `ember-vmm --api-sock` process in
// the background with its stdin/stdout/stderr on pipes.
#pragma once

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace ember::testing {

struct ApiReply {
  long status = 0;    // 0: no HTTP answer (transport error in `error`)
  std::string body;
  std::string error;
  nlohmann::json json() const { return nlohmann::json::parse(body, nullptr, false); }
  std::string fault() const {
    auto j = json();
    return j.is_object() ? j.value("fault_message", std::string()) : std::string();
  }
};

class ApiClient {
 public:
  explicit ApiClient(std::string socket) : socket_(std::move(socket)), curl_(curl_easy_init()) {
    if (!curl_) throw std::runtime_error("curl_easy_init failed");
  }
  ~ApiClient() { curl_easy_cleanup(curl_); }
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  ApiReply get(const std::string& path) { return request("GET", path, {}); }
  ApiReply put(const std::string& path, const std::string& body) { return request("PUT", path, body); }
  ApiReply patch(const std::string& path, const std::string& body) { return request("PATCH", path, body); }
  ApiReply put(const std::string& path, const nlohmann::json& body) { return put(path, body.dump()); }
  ApiReply patch(const std::string& path, const nlohmann::json& body) { return patch(path, body.dump()); }

  ApiReply request(const std::string& method, const std::string& path, const std::string& body,
                   long timeout_ms = 30000) {
    ApiReply r;
    curl_easy_reset(curl_);
    curl_easy_setopt(curl_, CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
    const std::string url = "http://localhost" + path;
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_slist* headers = nullptr;
    if (method != "GET") {
      headers = curl_slist_append(headers, "Content-Type: application/json");
      headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
      curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
    }
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &ApiClient::on_data);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &r.body);
    const CURLcode rc = curl_easy_perform(curl_);
    if (rc == CURLE_OK) curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &r.status);
    else r.error = curl_easy_strerror(rc);
    if (headers) curl_slist_free_all(headers);
    return r;
  }

 private:
  static size_t on_data(char* p, size_t size, size_t n, void* out) {
    static_cast<std::string*>(out)->append(p, size * n);
    return size * n;
  }
  std::string socket_;
  CURL* curl_;
};

inline bool socket_accepts(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// `ember-vmm ARGS...` in the background; stdin, stdout, stderr on pipes
// (stdout/stderr non-blocking, collected by read_*()).
class VmmProcess {
 public:
  explicit VmmProcess(const std::vector<std::string>& argv) {
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC))
      throw std::runtime_error("pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    if (rc != 0) throw std::runtime_error("spawn " + argv[0] + ": " + std::strerror(rc));
    stdin_ = in[1];
    stdout_ = out[0];
    stderr_ = err[0];
    ::fcntl(stdout_, F_SETFL, O_NONBLOCK);
    ::fcntl(stderr_, F_SETFL, O_NONBLOCK);
    ::signal(SIGPIPE, SIG_IGN);
  }
  ~VmmProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    for (int fd : {stdin_, stdout_, stderr_})
      if (fd >= 0) ::close(fd);
  }
  VmmProcess(const VmmProcess&) = delete;
  VmmProcess& operator=(const VmmProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool alive() {
    if (pid_ <= 0) return false;
    int ws;
    const pid_t r = ::waitpid(pid_, &ws, WNOHANG);
    if (r == pid_) {
      status_ = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
      pid_ = -1;
      return false;
    }
    return true;
  }

  bool wait_socket(const std::string& path, std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (std::chrono::steady_clock::now() < end) {
      if (socket_accepts(path)) return true;
      if (!alive()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return false;
  }

  void write_stdin(const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(stdin_, data.data() + done, data.size() - done);
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  }
  void close_stdin() {
    if (stdin_ >= 0) ::close(stdin_);
    stdin_ = -1;
  }

  // Collects stdout until it holds `want` bytes (or contains `want_text`),
  // the deadline passes, or EOF. Returns everything collected so far.
  const std::string& read_stdout_until(const std::string& want_text,
                                       std::chrono::milliseconds deadline = std::chrono::seconds(20)) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (out_.find(want_text) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !pump(stdout_, out_, static_cast<int>(left.count()))) break;
    }
    return out_;
  }
  // Whatever stdout has within `ms` (for "nothing arrives" checks).
  const std::string& read_stdout_for(std::chrono::milliseconds ms) {
    const auto end = std::chrono::steady_clock::now() + ms;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !pump(stdout_, out_, static_cast<int>(left.count()))) break;
    }
    return out_;
  }
  const std::string& stderr_text() {
    while (pump(stderr_, err_, 0)) {
    }
    return err_;
  }
  const std::string& stdout_text() { return out_; }

  // SIGTERM (unless sig == 0), then waits; the exit status (128+N if killed).
  int stop(int sig = SIGTERM, std::chrono::milliseconds deadline = std::chrono::seconds(20)) {
    if (pid_ > 0 && sig) ::kill(pid_, sig);
    return wait_exit(deadline);
  }
  int wait_exit(std::chrono::milliseconds deadline = std::chrono::seconds(20)) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (alive()) {
      if (std::chrono::steady_clock::now() > end) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
        return -1;
      }
      pump(stdout_, out_, 2);
      pump(stderr_, err_, 0);
    }
    while (pump(stdout_, out_, 0)) {
    }
    stderr_text();
    return status_;
  }

 private:
  // Reads what is there (waiting up to timeout_ms); false on EOF/timeout.
  static bool pump(int fd, std::string& into, int timeout_ms) {
    if (fd < 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[65536];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return false;
    into.append(buf, static_cast<size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int status_ = -1;
  int stdin_ = -1, stdout_ = -1, stderr_ = -1;
  std::string out_, err_;
};

}  // namespace ember::testing

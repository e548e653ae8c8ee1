// The API's HTTP transport (vmm/api_server.h) against hostile clients, over
// a real Unix socket with raw bytes: oversized bodies (announced and
// chunked), malformed HTTP, slow clients, more connections than the limit,
// keep-alive and pipelining, a stale socket file, a socket in use. The
// server runs its loop on a helper thread here (in ember-vmm it is the event
// loop); the handler echoes what it was given. Also the API-mode command line.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "vmm/api_server.h"
#include "vmm/api_vmm.h"

namespace ember {
namespace {

using namespace std::chrono_literals;

std::string temp_socket(const char* tag) {
  return "/tmp/ember-api-test-" + std::to_string(::getpid()) + "-" + tag + ".sock";
}

int connect_to(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Reads until `want` responses are complete (Content-Length framing), EOF,
// or the deadline. Returns what arrived.
std::string read_responses(int fd, int want = 1, std::chrono::milliseconds deadline = 5s) {
  std::string got;
  const auto end = std::chrono::steady_clock::now() + deadline;
  auto complete = [&]() {
    int found = 0;
    size_t pos = 0;
    while (found < want) {
      const size_t head_end = got.find("\r\n\r\n", pos);
      if (head_end == std::string::npos) return false;
      size_t len = 0;
      const size_t cl = got.find("Content-Length: ", pos);
      if (cl != std::string::npos && cl < head_end) len = std::stoul(got.substr(cl + 16));
      if (got.size() < head_end + 4 + len) return false;
      pos = head_end + 4 + len;
      found++;
    }
    return true;
  };
  while (!complete()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

// True once the peer closed (EOF) within the deadline.
bool closed_within(int fd, std::chrono::milliseconds deadline) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return true;
  }
}

int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0) return -1;
  return std::stoi(response.substr(9, 3));
}

class ApiServerTest : public ::testing::Test {
 protected:
  void start(unsigned limit = 8, unsigned timeout_s = 1) {
    path_ = temp_socket(::testing::UnitTest::GetInstance()->current_test_info()->name());
    ApiServerOptions o;
    o.socket_path = path_;
    o.connection_limit = limit;
    o.idle_timeout_s = timeout_s;
    auto s = ApiServer::start(
        o,
        [this](std::string_view m, std::string_view p, std::string_view b) {
          handled_++;
          nlohmann::json j{{"method", m}, {"path", p}, {"body_size", b.size()}};
          return HttpResponse{200, j.dump(), {}};
        },
        [](int status, const std::string& msg) {
          return HttpResponse{status, nlohmann::json{{"fault_message", msg}}.dump(), {}};
        });
    ASSERT_TRUE(s.ok()) << s.message();
    server_ = std::move(*s);
    loop_ = std::thread([this] {
      const int ep = ::epoll_create1(EPOLL_CLOEXEC);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ::epoll_ctl(ep, EPOLL_CTL_ADD, server_->fd(), &ev);
      while (!stop_.load()) {
        epoll_event e;
        if (::epoll_wait(ep, &e, 1, 20) > 0) server_->run();
      }
      ::close(ep);
    });
  }
  void TearDown() override {
    stop_.store(true);
    if (loop_.joinable()) loop_.join();
    server_.reset();
    if (!path_.empty()) {
      struct stat st;
      EXPECT_NE(::stat(path_.c_str(), &st), 0) << "the socket file must be removed";
    }
  }

  std::string path_;
  std::unique_ptr<ApiServer> server_;
  std::thread loop_;
  std::atomic<bool> stop_{false};
  std::atomic<int> handled_{0};
};

TEST_F(ApiServerTest, AnswersAndKeepsAlive) {
  start();
  const int fd = connect_to(path_);
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 3; i++) {
    ASSERT_TRUE(send_all(fd, "PUT /x HTTP/1.1\r\nHost: l\r\nContent-Length: 4\r\n\r\nabcd"));
    const std::string r = read_responses(fd);
    EXPECT_EQ(status_of(r), 200) << r;
    EXPECT_NE(r.find("application/json"), std::string::npos);
    EXPECT_NE(r.find(R"("body_size":4)"), std::string::npos) << r;
  }
  ::close(fd);
  EXPECT_EQ(handled_.load(), 3);
}

TEST_F(ApiServerTest, Pipelined) {
  start();
  const int fd = connect_to(path_);
  ASSERT_GE(fd, 0);
  std::string reqs;
  for (int i = 0; i < 5; i++) reqs += "GET /p" + std::to_string(i) + " HTTP/1.1\r\nHost: l\r\n\r\n";
  ASSERT_TRUE(send_all(fd, reqs));
  const std::string r = read_responses(fd, 5);
  for (int i = 0; i < 5; i++) EXPECT_NE(r.find("\"/p" + std::to_string(i) + "\""), std::string::npos) << r;
  ::close(fd);
}

TEST_F(ApiServerTest, AnnouncedHugeBodyIs413BeforeItIsSent) {
  start();
  const int fd = connect_to(path_);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "PUT /x HTTP/1.1\r\nHost: l\r\nContent-Length: 51201\r\n\r\n"));
  const std::string r = read_responses(fd);
  EXPECT_EQ(status_of(r), 413) << r;
  EXPECT_NE(r.find("larger than the limit of 51200"), std::string::npos) << r;
  ::close(fd);
  // Exactly the cap is fine.
  const int fd2 = connect_to(path_);
  ASSERT_TRUE(send_all(fd2, "PUT /x HTTP/1.1\r\nHost: l\r\nContent-Length: 51200\r\n\r\n" + std::string(51200, 'x')));
  const std::string r2 = read_responses(fd2);
  EXPECT_EQ(status_of(r2), 200) << r2.substr(0, 200);
  EXPECT_NE(r2.find(R"("body_size":51200)"), std::string::npos);
  ::close(fd2);
  EXPECT_EQ(handled_.load(), 1);
}

TEST_F(ApiServerTest, ChunkedHugeBodyIs413) {
  start();
  const int fd = connect_to(path_);
  ASSERT_GE(fd, 0);
  std::string req = "PUT /x HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 30; i++) req += "1000\r\n" + std::string(0x1000, 'y') + "\r\n";
  req += "0\r\n\r\n";
  ASSERT_TRUE(send_all(fd, req));
  const std::string r = read_responses(fd);
  EXPECT_EQ(status_of(r), 413) << r.substr(0, 300);
  ::close(fd);
  EXPECT_EQ(handled_.load(), 0);
}

TEST_F(ApiServerTest, EndlessChunkedBodyIsCutOff) {
  start();
  const int fd = connect_to(path_);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "PUT /x HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n"));
  const std::string chunk = "10000\r\n" + std::string(0x10000, 'z') + "\r\n";
  bool cut = false;
  for (int i = 0; i < 200 && !cut; i++) cut = !send_all(fd, chunk);
  EXPECT_TRUE(cut || closed_within(fd, 2s)) << "the server kept reading an endless body";
  ::close(fd);
}

TEST_F(ApiServerTest, MalformedHttpGetsAnErrorAndTheServerLivesOn) {
  start();
  for (const char* junk : {"GARBAGE\r\n\r\n", "GET\r\n\r\n", "GET / HTTP/9.9\r\n\r\n",
                           "PUT /x HTTP/1.1\r\nHost: l\r\nContent-Length: abc\r\n\r\n",
                           "PUT /x HTTP/1.1\r\nHost: l\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                           "\x01\x02\x03\x04\r\n\r\n"}) {
    const int fd = connect_to(path_);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, junk));
    const std::string r = read_responses(fd, 1, 3s);
    const int st = status_of(r);
    EXPECT_TRUE(st >= 400 || (st == -1 && r.empty())) << junk << " -> " << r;
    ::close(fd);
  }
  // Huge header block.
  const int fd = connect_to(path_);
  send_all(fd, "GET / HTTP/1.1\r\nHost: l\r\nX-Big: " + std::string(64 * 1024, 'h') + "\r\n\r\n");
  const std::string r = read_responses(fd, 1, 3s);
  EXPECT_TRUE(r.empty() || status_of(r) >= 400) << r.substr(0, 100);
  ::close(fd);
  // Still serving.
  const int ok = connect_to(path_);
  ASSERT_TRUE(send_all(ok, "GET / HTTP/1.1\r\nHost: l\r\n\r\n"));
  EXPECT_EQ(status_of(read_responses(ok)), 200);
  ::close(ok);
}

TEST_F(ApiServerTest, SlowClientsDoNotBlockOthersAndAreTimedOut) {
  start(/*limit=*/8, /*timeout_s=*/1);
  // Half a request line, then silence.
  const int slow = connect_to(path_);
  ASSERT_GE(slow, 0);
  ASSERT_TRUE(send_all(slow, "PUT /x HTTP/1.1\r\nHost: l\r\nContent-Length: 10\r\n\r\nabc"));
  const int idle = connect_to(path_);  // says nothing at all
  ASSERT_GE(idle, 0);
  const auto t0 = std::chrono::steady_clock::now();
  const int fast = connect_to(path_);
  ASSERT_TRUE(send_all(fast, "GET / HTTP/1.1\r\nHost: l\r\n\r\n"));
  EXPECT_EQ(status_of(read_responses(fast)), 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms) << "a slow client held up another";
  ::close(fast);
  EXPECT_TRUE(closed_within(slow, 4s)) << "the slow client was never timed out";
  EXPECT_TRUE(closed_within(idle, 4s)) << "the idle client was never timed out";
  ::close(slow);
  ::close(idle);
}

TEST_F(ApiServerTest, MoreConnectionsThanTheLimitWaitTheirTurn) {
  start(/*limit=*/4, /*timeout_s=*/1);
  std::vector<int> fds;
  for (int i = 0; i < 40; i++) {
    const int fd = connect_to(path_);
    ASSERT_GE(fd, 0) << i;
    fds.push_back(fd);
  }
  // Every one of them gets an answer in the end (the first ones at once,
  // the others as slots free up).
  for (int fd : fds) ASSERT_TRUE(send_all(fd, "GET / HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n"));
  int answered = 0;
  for (int fd : fds) answered += status_of(read_responses(fd, 1, 10s)) == 200;
  for (int fd : fds) ::close(fd);
  EXPECT_EQ(answered, 40);
  EXPECT_LE(server_->connections(), 4u);
}

TEST_F(ApiServerTest, IdleConnectionsAtTheLimitTimeOutAndTheNextClientIsServed) {
  start(/*limit=*/4, /*timeout_s=*/1);
  std::vector<int> idle;
  for (int i = 0; i < 4; i++) idle.push_back(connect_to(path_));
  std::this_thread::sleep_for(100ms);  // all four accepted: the server is at its limit
  const auto t0 = std::chrono::steady_clock::now();
  const int fd = connect_to(path_);  // waits in the backlog
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "GET / HTTP/1.1\r\nHost: l\r\n\r\n"));
  EXPECT_EQ(status_of(read_responses(fd, 1, 5s)), 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  ::close(fd);
  for (int i : idle) ::close(i);
}

TEST_F(ApiServerTest, ClientVanishingMidRequest) {
  start();
  for (int i = 0; i < 20; i++) {
    const int fd = connect_to(path_);
    send_all(fd, "PUT /x HTTP/1.1\r\nHost: l\r\nContent-Length: 100\r\n\r\nhalf");
    ::close(fd);
  }
  const int fd = connect_to(path_);
  ASSERT_TRUE(send_all(fd, "GET / HTTP/1.1\r\nHost: l\r\n\r\n"));
  EXPECT_EQ(status_of(read_responses(fd)), 200);
  ::close(fd);
}

TEST(ApiSocket, StaleSocketIsReplacedLiveOneIsRefused) {
  const std::string path = temp_socket("stale");
  {
    auto fd = listen_unix(path);
    ASSERT_TRUE(fd.ok()) << fd.message();
    // Closing without unlinking leaves a stale socket file.
  }
  auto again = listen_unix(path);
  ASSERT_TRUE(again.ok()) << again.message();
  auto third = listen_unix(path);
  ASSERT_FALSE(third.ok());
  EXPECT_NE(third.message().find("in use"), std::string::npos) << third.message();
  ::unlink(path.c_str());
  const std::string file = path + ".file";
  ::close(::open(file.c_str(), O_CREAT | O_WRONLY, 0600));
  auto notsock = listen_unix(file);
  ASSERT_FALSE(notsock.ok());
  EXPECT_NE(notsock.message().find("not a socket"), std::string::npos);
  ::unlink(file.c_str());
  auto toolong = listen_unix("/tmp/" + std::string(200, 'x'));
  ASSERT_FALSE(toolong.ok());
  EXPECT_NE(toolong.message().find("too long"), std::string::npos);
}

TEST(ApiCli, RecognisesApiMode) {
  EXPECT_TRUE(is_api_invocation({"--api-sock", "/tmp/s"}));
  EXPECT_TRUE(is_api_invocation({"--id", "x", "--api-sock=/tmp/s"}));
  EXPECT_TRUE(is_api_invocation({"--config-file", "vm.json", "--no-api"}));
  EXPECT_FALSE(is_api_invocation({"run", "--api-sock", "x"}));
  EXPECT_FALSE(is_api_invocation({"--help"}));
  EXPECT_FALSE(is_api_invocation({}));
  EXPECT_FALSE(is_api_invocation({"--api-socket", "x"}));
}

TEST(ApiCli, Parses) {
  auto o = parse_api_cli({"--api-sock", "/tmp/s", "--id", "fn-1_a", "--api-timeout-s=3", "-v"});
  ASSERT_TRUE(o.ok()) << o.message();
  EXPECT_EQ(o->api_sock, "/tmp/s");
  EXPECT_EQ(o->id, "fn-1_a");
  EXPECT_EQ(o->api_timeout_s, 3u);
  EXPECT_TRUE(o->verbose);
  EXPECT_FALSE(o->no_api);
  o = parse_api_cli({"--config-file", "vm.json"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->no_api);
  o = parse_api_cli({"--config-file", "vm.json", "--api-sock", "/tmp/s"});
  ASSERT_TRUE(o.ok());
  EXPECT_FALSE(o->no_api);
  EXPECT_EQ(parse_api_cli({"--api-sock", "/s", "--id", "bad id"}).message(),
            "--id bad id: only letters, digits, '-' and '_' are allowed");
  EXPECT_FALSE(parse_api_cli({"--api-sock"}).ok());
  EXPECT_FALSE(parse_api_cli({"--no-api"}).ok());
  EXPECT_FALSE(parse_api_cli({"--no-api", "--api-sock", "/s", "--config-file", "c"}).ok());
  EXPECT_FALSE(parse_api_cli({"--api-sock", "/s", "--bogus"}).ok());
  EXPECT_FALSE(parse_api_cli({"--api-sock", "/s", "--api-timeout-s", "0"}).ok());
  EXPECT_FALSE(parse_api_cli({"--api-sock", "/s", "--no-api=1"}).ok());
  EXPECT_TRUE(parse_api_cli({"--help"})->help);
}

}  // namespace
}  // namespace ember

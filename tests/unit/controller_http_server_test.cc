// emberd's HTTP front door (controller/http_server.h) over real sockets:
// slow clients cost sockets, not threads; a full lane or a body that would
// not fit is answered 429 from the request's head; health-like requests
// answer however busy the workers are; bodies are capped before they are
// read. And the WorkerPool under it.
#include "controller/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "controller/worker_pool.h"
#include "tests/loopback_tcp.h"

namespace ember::controller {
namespace {

// A gate the tasks wait at until the test opens it.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int arrived = 0;
  void pass() {
    std::unique_lock<std::mutex> l(mu);
    arrived++;
    cv.notify_all();
    cv.wait(l, [&] { return open; });
  }
  bool wait_arrived(int n) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, std::chrono::seconds(10), [&] { return arrived >= n; });
  }
  void release() {
    std::lock_guard<std::mutex> l(mu);
    open = true;
    cv.notify_all();
  }
};

// What arrives on `fd` within `ms`, up to the end of an answer's head.
std::string read_for(int fd, int ms) {
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.find("\r\n\r\n") != std::string::npos) break;
  }
  return out;
}

// Sends `head` alone (a body it announces is never sent) and returns the answer's head.
std::string head_only(int port, const std::string& head) {
  const int fd = ember::testing::connect_loopback(port);
  if (fd < 0) return "no connection";
  if (::write(fd, head.data(), head.size()) != static_cast<ssize_t>(head.size())) return "short write";
  std::string answer = read_for(fd, 5000);
  ::close(fd);
  return answer;
}

TEST(WorkerPool, RefusesPastItsThreadsAndWaitListThenRunsWhatItTook) {
  Gate gate;
  std::atomic<int> ran{0};
  {
    WorkerPool pool(2, 1);
    EXPECT_TRUE(pool.try_post([&] { gate.pass(), ran++; }));
    EXPECT_TRUE(pool.try_post([&] { gate.pass(), ran++; }));
    ASSERT_TRUE(gate.wait_arrived(2));
    EXPECT_FALSE(pool.full());
    EXPECT_TRUE(pool.try_post([&] { ran++; }));  // waits
    EXPECT_TRUE(pool.full());
    EXPECT_FALSE(pool.try_post([&] { ran++; }));
    gate.release();
    pool.stop();
    EXPECT_FALSE(pool.try_post([&] { ran++; })) << "after stop()";
  }
  EXPECT_EQ(ran.load(), 3);
}

// A server with one thread per lane: /hold waits at the gate, /now is
// answered on the event loop, /echo returns its body.
class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override { start(); }
  void start(uint64_t body_memory = 64 << 20) {
    HttpServerOptions o;
    o.host = "127.0.0.1";
    o.control_threads = 1;
    o.invoke_threads = 1;
    o.queue = 0;
    o.idle_timeout_s = 60;
    o.body_memory = body_memory;
    o.error = [](int status, const std::string& m) {
      HttpReply r;
      r.status = status;
      r.body = "{\"error\": \"" + m + "\"}\n";
      return r;
    };
    auto plan = [](const HttpRequest& head) {
      HttpPlan p;
      if (head.path == "/now") return p;
      p.lane = head.path == "/hold" ? HttpPlan::kInvoke : HttpPlan::kControl;
      p.max_body = 1 << 20;
      p.body_name = "test body";
      if (head.path == "/nope") p.answer = HttpReply{404, "no\n"};
      return p;
    };
    auto handle = [this](HttpRequest& req) {
      HttpReply r;
      r.content_type = "text/plain";
      if (req.path == "/hold") gate_.pass();
      r.body = req.path + " " + req.body;
      for (const auto& [k, v] : req.query) r.body += " " + k + "=" + v;
      return r;
    };
    auto s = HttpServer::start(o, plan, handle);
    ASSERT_TRUE(s) << s.message();
    server_ = std::move(*s);
  }
  void TearDown() override {
    gate_.release();
    for (auto& t : threads_) t.join();
    if (server_) server_->stop();
  }
  httplib::Client client() {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(10, 0);
    return c;
  }
  int connect_raw() { return ember::testing::connect_loopback(server_->port()); }
  void hold_the_invoke_lane() {
    threads_.emplace_back([this] {
      auto c = client();
      auto r = c.Post("/hold", "x", "text/plain");
      EXPECT_TRUE(r && r->status == 200);
    });
    ASSERT_TRUE(gate_.wait_arrived(1));
  }
  Gate gate_;
  std::vector<std::thread> threads_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, BodiesQueriesAndAnswersFromTheHead) {
  auto c = client();
  auto r = c.Post("/echo%20me?a=1&b=two%21", "hello", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "/echo me hello a=1 b=two!");
  auto nope = c.Get("/nope");
  ASSERT_TRUE(nope);
  EXPECT_EQ(nope->status, 404);
  EXPECT_EQ(nope->body, "no\n");
  // A keep-alive connection serves the next request.
  auto again = c.Post("/echo", std::string(300000, 'z'), "text/plain");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body.size(), 6u + 300000u);
}

TEST_F(HttpServerTest, ABodyOverTheCapIs413WithoutBeingRead) {
  const std::string answer =
      head_only(server_->port(), "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\nabc");
  EXPECT_EQ(answer.rfind("HTTP/1.1 413", 0), 0u) << answer;
  EXPECT_NE(answer.find("test body of 999999999 bytes"), std::string::npos) << answer;
  auto c = client();
  auto r = c.Post("/echo", std::string((1 << 20) + 1, 'x'), "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413) << "read and dropped, then refused";
}

TEST_F(HttpServerTest, AFullLaneIs429FromTheHeadAndNowRequestsStillAnswer) {
  hold_the_invoke_lane();
  // Its body is announced and never sent: the answer comes from the head.
  const std::string answer = head_only(server_->port(), "POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 429", 0), 0u) << answer;
  EXPECT_NE(answer.find("Retry-After: 1"), std::string::npos) << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
  // The other lane and the event loop are not held by it.
  auto c = client();
  auto now = c.Get("/now");
  ASSERT_TRUE(now);
  EXPECT_EQ(now->status, 200);
  auto control = c.Get("/list");
  ASSERT_TRUE(control);
  EXPECT_EQ(control->status, 200);
}

TEST_F(HttpServerTest, TricklingClientsCostSocketsNotThreads) {
  // 200 slowloris clients, each with a request head that never ends.
  std::vector<int> slow;
  for (int i = 0; i < 200; i++) {
    const int fd = connect_raw();
    ASSERT_GE(fd, 0);
    const std::string part = "POST /echo HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    ASSERT_EQ(::write(fd, part.data(), part.size()), static_cast<ssize_t>(part.size()));
    slow.push_back(fd);
  }
  for (int round = 0; round < 3; round++) {
    for (int fd : slow) (void)!::write(fd, "a", 1);
    const auto t0 = std::chrono::steady_clock::now();
    auto c = client();
    auto now = c.Get("/now");
    auto work = c.Post("/echo", "still served", "text/plain");
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(now && work);
    EXPECT_EQ(now->status, 200);
    EXPECT_EQ(work->body, "/echo still served");
    EXPECT_LT(ms, 2000) << "answers waited for the slow clients";
  }
  for (int fd : slow) ::close(fd);
}

TEST(HttpServerMemory, ABodyThatWouldNotFitIs429) {
  HttpServerOptions o;
  o.host = "127.0.0.1";
  o.body_memory = 1 << 20;
  o.error = [](int status, const std::string& m) { return HttpReply{status, m}; };
  auto s = HttpServer::start(
      o,
      [](const HttpRequest&) {
        HttpPlan p;
        p.lane = HttpPlan::kControl;
        p.max_body = 8 << 20;
        return p;
      },
      [](HttpRequest& req) { return HttpReply{200, std::to_string(req.body.size())}; });
  ASSERT_TRUE(s) << s.message();
  httplib::Client c("127.0.0.1", (*s)->port());
  auto small = c.Post("/x", std::string(500000, 'a'), "text/plain");
  ASSERT_TRUE(small);
  EXPECT_EQ(small->status, 200);
  EXPECT_EQ(small->body, "500000");
  const std::string big = head_only((*s)->port(), "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n");
  EXPECT_EQ(big.rfind("HTTP/1.1 429", 0), 0u) << big;
  (*s)->stop();
}

}  // namespace
}  // namespace ember::controller

// emberd's bounded HTTP connection queue: busy threads and a full wait list
// mean an immediate 429, never an unbounded queue.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "controller/http_task_queue.h"

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
  void wait_arrived(int n) {
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(10), [&] { return arrived >= n; })) << arrived << " of " << n;
  }
  void release() {
    std::lock_guard<std::mutex> l(mu);
    open = true;
    cv.notify_all();
  }
};

TEST(HttpTaskQueue, FullThreadsAndWaitListOverflowThenRunOnTheCaller) {
  Gate gate;
  std::mutex mu;
  std::vector<std::pair<char, bool>> ran;  // task, served in overflow mode
  auto task = [&](char name, bool blocks) {
    return [&, name, blocks] {
      {
        std::lock_guard<std::mutex> l(mu);
        ran.emplace_back(name, BoundedTaskQueue::serving_overflow());
      }
      if (blocks) gate.pass();
    };
  };
  {
    BoundedTaskQueue q(1, 1);
    q.enqueue(task('A', true));  // the one thread
    gate.wait_arrived(1);
    q.enqueue(task('B', false));  // waits for it
    q.enqueue(task('C', true));   // the wait list is full: the overflow thread
    gate.wait_arrived(2);
    q.enqueue(task('D', false));  // waits for the overflow thread
    const auto caller = std::this_thread::get_id();
    std::thread::id ran_on;
    bool overflow_there = false;
    q.enqueue([&] {  // everything full: runs here, now
      ran_on = std::this_thread::get_id();
      overflow_there = BoundedTaskQueue::serving_overflow();
    });
    EXPECT_EQ(ran_on, caller);
    EXPECT_TRUE(overflow_there);
    EXPECT_FALSE(BoundedTaskQueue::serving_overflow()) << "the caller's thread is back to normal";
    gate.release();
    q.shutdown();  // serves what waits, then joins
  }
  std::map<char, bool> by_name(ran.begin(), ran.end());
  ASSERT_EQ(by_name.size(), 4u);
  EXPECT_FALSE(by_name['A']);
  EXPECT_FALSE(by_name['B']);
  EXPECT_TRUE(by_name['C']);
  EXPECT_TRUE(by_name['D']);
}

TEST(HttpTaskQueue, ABusyServerAnswers429WithRetryAfter) {
  httplib::Server svr;
  serve_with_bounded_queue(svr, 1, 0);
  Gate gate;
  svr.Get("/hold", [&](const httplib::Request&, httplib::Response& res) {
    gate.pass();
    res.set_content("held\n", "text/plain");
  });
  svr.Get("/ping", [](const httplib::Request&, httplib::Response& res) { res.set_content("pong\n", "text/plain"); });
  const int port = svr.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread server([&] { svr.listen_after_bind(); });

  std::thread holder([&] {
    httplib::Client c("127.0.0.1", port);
    auto r = c.Get("/hold");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  });
  gate.wait_arrived(1);  // the only thread is busy, nothing may wait

  httplib::Client c("127.0.0.1", port);
  auto busy = c.Get("/ping");
  ASSERT_TRUE(busy);
  EXPECT_EQ(busy->status, 429);
  EXPECT_EQ(busy->get_header_value("Retry-After"), "1");
  EXPECT_EQ(busy->get_header_value("Connection"), "close");
  EXPECT_NE(busy->body.find("saturated"), std::string::npos) << busy->body;

  gate.release();
  holder.join();
  // Served normally again once the thread is free (a new connection).
  httplib::Client again("127.0.0.1", port);
  int status = 0;
  std::string body;
  for (int i = 0; i < 100 && status != 200; i++) {
    if (auto r = again.Get("/ping")) status = r->status, body = r->body;
    if (status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(status, 200);
  EXPECT_EQ(body, "pong\n");
  svr.stop();
  server.join();
}

}  // namespace
}  // namespace ember::controller

#include "controller/http_task_queue.h"

#include <nlohmann/json.hpp>
#include <string>

namespace ember::controller {

namespace {
thread_local bool t_overflow = false;
}  // namespace

BoundedTaskQueue::BoundedTaskQueue(size_t threads, size_t max_waiting) : max_waiting_(max_waiting) {
  // Counted idle from the start: a connection accepted before a thread has
  // first run must not be mistaken for overflow.
  normal_.idle = threads;
  overflow_.idle = 1;
  for (size_t i = 0; i < threads; i++) normal_.threads.emplace_back([this] { work(normal_, false); });
  overflow_.threads.emplace_back([this] { work(overflow_, true); });
}

BoundedTaskQueue::~BoundedTaskQueue() { shutdown(); }

bool BoundedTaskQueue::serving_overflow() { return t_overflow; }

void BoundedTaskQueue::enqueue(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> l(mu_);
    // A thread that is idle takes the connection now; otherwise it waits
    // its turn if the wait list has room.
    for (Lane* lane : {&normal_, &overflow_}) {
      if (lane->waiting.size() < lane->idle + max_waiting_) {
        lane->waiting.push_back(std::move(fn));
        cv_.notify_all();
        return;
      }
    }
  }
  // Both lanes full: answer it here, before accepting anything else.
  t_overflow = true;
  fn();
  t_overflow = false;
}

void BoundedTaskQueue::work(Lane& lane, bool overflow) {
  t_overflow = overflow;
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [&] { return stopping_ || !lane.waiting.empty(); });
    // On shutdown, connections already accepted are still served (and closed).
    if (lane.waiting.empty()) return;
    auto fn = std::move(lane.waiting.front());
    lane.waiting.pop_front();
    lane.idle--;
    l.unlock();
    fn();
    l.lock();
    lane.idle++;
  }
}

void BoundedTaskQueue::shutdown() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (Lane* lane : {&normal_, &overflow_})
    for (auto& t : lane->threads) t.join();
}

void serve_with_bounded_queue(httplib::Server& svr, size_t threads, size_t max_waiting) {
  svr.new_task_queue = [threads, max_waiting] { return new BoundedTaskQueue(threads, max_waiting); };
  svr.set_pre_routing_handler([threads, max_waiting](const httplib::Request&, httplib::Response& res) {
    if (!BoundedTaskQueue::serving_overflow()) return httplib::Server::HandlerResponse::Unhandled;
    res.status = 429;
    res.set_header("Retry-After", "1");
    // The client should not send its next request on this connection: it
    // would be answered 429 again, however idle emberd has become by then.
    res.set_header("Connection", "close");
    const std::string why = "emberd is saturated: all " + std::to_string(threads) + " HTTP threads are busy and " +
                            std::to_string(max_waiting) + " connections wait (http_threads, http_queue); try again";
    res.set_content(nlohmann::json{{"error", why}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", "application/json");
    return httplib::Server::HandlerResponse::Handled;
  });
}

}  // namespace ember::controller

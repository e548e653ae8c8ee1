// emberd's HTTP connection queue: a fixed pool of threads (cpp-httplib serves
// one connection per thread, and an invocation holds its thread until the
// program answers) with a bounded wait list. httplib's own ThreadPool queues
// without bound: at saturation every new connection would wait, memory and
// latency growing, with no answer. Here a connection that finds the threads
// busy and the wait list full is served in *overflow* mode instead: its
// request gets an immediate 429 with Retry-After (see overflow_answer()).
//
// Overflow connections run on one thread of their own with a wait list of
// the same bound; past that, on the accepting thread itself, which stops
// accepting while it answers: the kernel's listen backlog is then the queue,
// and past it new connections are refused by the kernel. Memory stays
// bounded at every step.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <httplib.h>

namespace ember::controller {

class BoundedTaskQueue : public httplib::TaskQueue {
 public:
  BoundedTaskQueue(size_t threads, size_t max_waiting);
  ~BoundedTaskQueue() override;

  void enqueue(std::function<void()> fn) override;
  void shutdown() override;

  // True on a thread that is serving a connection in overflow mode: every
  // request on it is to be answered 429 without doing its work.
  static bool serving_overflow();

 private:
  struct Lane {
    std::deque<std::function<void()>> waiting;
    std::vector<std::thread> threads;
    size_t idle = 0;
  };
  void work(Lane& lane, bool overflow);

  const size_t max_waiting_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  Lane normal_, overflow_;
};

// Installs the queue on `svr` and the pre-routing handler that answers
// overflow requests: 429, Retry-After: 1, Connection: close, a JSON error.
void serve_with_bounded_queue(httplib::Server& svr, size_t threads, size_t max_waiting);

}  // namespace ember::controller

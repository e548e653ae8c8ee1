// A fixed number of threads with a bounded wait list. try_post() never
// blocks and never queues past the bound: a caller that is refused answers
// "busy" at once instead of piling up work, memory and latency.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ember::controller {

class WorkerPool {
 public:
  // Throws std::system_error when the threads cannot be made (none is left running).
  WorkerPool(size_t threads, size_t max_waiting);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Runs `task` on a worker now or after those waiting; false when every
  // worker is busy and max_waiting tasks already wait (or after stop()).
  bool try_post(std::function<void()> task);
  // Whether try_post would refuse now.
  bool full() const;
  // Runs what was posted, then joins the workers; later posts are refused.
  void stop();
  size_t threads() const { return size_; }

 private:
  void work();
  const size_t size_, max_waiting_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> waiting_;
  size_t idle_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace ember::controller

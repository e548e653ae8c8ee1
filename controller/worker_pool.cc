#include "controller/worker_pool.h"

namespace ember::controller {

WorkerPool::WorkerPool(size_t threads, size_t max_waiting) : size_(threads), max_waiting_(max_waiting), idle_(threads) {
  threads_.reserve(threads);
  try {
    for (size_t i = 0; i < threads; i++) threads_.emplace_back([this] { work(); });
  } catch (...) {  // no thread to be had (EAGAIN): the ones made go, the caller hears why
    stop();
    throw;
  }
}

WorkerPool::~WorkerPool() { stop(); }

bool WorkerPool::full() const {
  std::lock_guard<std::mutex> l(mu_);
  return stopping_ || waiting_.size() >= idle_ + max_waiting_;
}

bool WorkerPool::try_post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> l(mu_);
    // Idle workers take a task each at once; beyond them, max_waiting wait.
    if (stopping_ || waiting_.size() >= idle_ + max_waiting_) return false;
    waiting_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

void WorkerPool::work() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [&] { return stopping_ || !waiting_.empty(); });
    if (waiting_.empty()) return;  // stopping, and nothing left to run
    auto task = std::move(waiting_.front());
    waiting_.pop_front();
    idle_--;
    l.unlock();
    task();
    task = nullptr;  // what it captured goes before the worker counts as idle
    l.lock();
    idle_++;
  }
}

void WorkerPool::stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace ember::controller

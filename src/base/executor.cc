#include "base/executor.h"

#include <pthread.h>

#include <cstdio>
#include <cstdlib>

namespace drover::base {

ThreadExecutor::ThreadExecutor(std::string name) : thread_([this] { run(); }) {
  pthread_setname_np(thread_.native_handle(), name.substr(0, 15).c_str());
}

ThreadExecutor::~ThreadExecutor() {
  // Destroying an executor from one of its own tasks would free the state its loop is using.
  if (isCurrent()) {
    std::fprintf(stderr, "drover: an executor was destroyed from its own thread\n");
    std::abort();
  }
  stop();
}

void ThreadExecutor::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  // From one of its own tasks: the loop ends when that task returns; the destructor joins.
  if (isCurrent()) return;
  if (thread_.joinable()) thread_.join();
}

void ThreadExecutor::post(Task task) { postAfter(Duration::zero(), std::move(task)); }

TimerId ThreadExecutor::postAfter(Duration delay, Task task) {
  TimerId id;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return 0;
    id = next_id_++;
    TimePoint due = SteadyClock::instance().now() + delay;
    queue_.emplace(std::make_pair(due, id), std::move(task));
    timers_.emplace(id, due);
  }
  cv_.notify_one();
  return id;
}

void ThreadExecutor::cancel(TimerId id) {
  std::lock_guard lock(mu_);
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  queue_.erase(std::make_pair(it->second, id));
  timers_.erase(it);
}

void ThreadExecutor::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (queue_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto first = queue_.begin();
    if (first->first.first > SteadyClock::instance().now()) {
      cv_.wait_until(lock, first->first.first);
      continue;
    }
    Task task = std::move(first->second);
    timers_.erase(first->first.second);
    queue_.erase(first);
    lock.unlock();
    task();
    lock.lock();
  }
  queue_.clear();
  timers_.clear();
}

void ManualExecutor::post(Task task) { postAfter(Duration::zero(), std::move(task)); }

TimerId ManualExecutor::postAfter(Duration delay, Task task) {
  std::lock_guard lock(mu_);
  TimerId id = next_id_++;
  TimePoint due = clock_.now() + delay;
  queue_.emplace(std::make_pair(due, id), std::move(task));
  timers_.emplace(id, due);
  return id;
}

void ManualExecutor::cancel(TimerId id) {
  std::lock_guard lock(mu_);
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  queue_.erase(std::make_pair(it->second, id));
  timers_.erase(it);
}

size_t ManualExecutor::runReady() {
  size_t ran = 0;
  while (true) {
    Task task;
    {
      std::lock_guard lock(mu_);
      auto first = queue_.begin();
      if (first == queue_.end() || first->first.first > clock_.now()) return ran;
      task = std::move(first->second);
      timers_.erase(first->first.second);
      queue_.erase(first);
    }
    task();
    ++ran;
  }
}

void ManualExecutor::advance(Duration d) {
  TimePoint end = clock_.now() + d;
  while (true) {
    runReady();
    TimePoint next;
    {
      std::lock_guard lock(mu_);
      if (queue_.empty() || queue_.begin()->first.first > end) break;
      next = queue_.begin()->first.first;
    }
    if (next > clock_.now()) clock_.advance(next - clock_.now());
  }
  if (end > clock_.now()) clock_.advance(end - clock_.now());
  runReady();
}

}  // namespace drover::base

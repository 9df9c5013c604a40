#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "base/clock.h"

namespace drover::base {

using Task = std::function<void()>;
using TimerId = uint64_t;

// Runs tasks one at a time, in the order posted. A stateful component owns one executor and
// touches its state only from tasks on it, so that state needs no locks. post() and postAfter()
// are thread-safe and never block on the tasks themselves.
class Executor {
 public:
  virtual ~Executor() = default;
  virtual void post(Task task) = 0;
  // Runs `task` once `delay` has passed on the executor's clock. The id can cancel it.
  virtual TimerId postAfter(Duration delay, Task task) = 0;
  // Cancels a timer that has not started; a no-op for unknown or fired ids.
  virtual void cancel(TimerId id) = 0;
  virtual const Clock& clock() const = 0;
};

// One thread of its own, steady time. The destructor stops it: pending tasks and timers that
// have not started are dropped, a running task is waited for.
class ThreadExecutor final : public Executor {
 public:
  explicit ThreadExecutor(std::string name = "executor");
  ~ThreadExecutor() override;
  ThreadExecutor(const ThreadExecutor&) = delete;
  ThreadExecutor& operator=(const ThreadExecutor&) = delete;

  void post(Task task) override;
  TimerId postAfter(Duration delay, Task task) override;
  void cancel(TimerId id) override;
  const Clock& clock() const override { return SteadyClock::instance(); }
  // True when called from this executor's own thread.
  bool isCurrent() const { return std::this_thread::get_id() == thread_.get_id(); }
  // Stops the thread: tasks not started are dropped, later posts too. Idempotent. Called from a
  // task of this executor, it returns at once and the loop ends after that task. The destructor
  // must not run on the executor's own thread (it aborts).
  void stop();

 private:
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<std::pair<TimePoint, TimerId>, Task> queue_;  // ordered by (due, sequence)
  std::map<TimerId, TimePoint> timers_;
  TimerId next_id_ = 1;
  bool stopping_ = false;
  std::thread thread_;
};

// Deterministic executor for unit tests: nothing runs until the test calls runReady() or
// advance(). Single-threaded use only (the test's thread), apart from post() which is safe from
// any thread.
class ManualExecutor final : public Executor {
 public:
  void post(Task task) override;
  TimerId postAfter(Duration delay, Task task) override;
  void cancel(TimerId id) override;
  const Clock& clock() const override { return clock_; }

  // Runs every task that is due now, including those they post; returns how many ran.
  size_t runReady();
  // Moves time forward by `d`, running due tasks in time order as it goes.
  void advance(Duration d);
  ManualClock& manualClock() { return clock_; }

 private:
  std::mutex mu_;
  ManualClock clock_;
  std::multimap<std::pair<TimePoint, TimerId>, Task> queue_;
  std::map<TimerId, TimePoint> timers_;
  TimerId next_id_ = 1;
};

}  // namespace drover::base

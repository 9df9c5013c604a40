#pragma once

// A fixed pool of task slots.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "worker/handler.h"

namespace drover::worker {

// Runs handlers on `slots` threads of its own, at most one task per slot. It never queues past
// its slots: tryRun() refuses when every slot is taken (the leader must not overfill a worker).
// Enforces each task's timeout: when ctx.timeout has passed since the run started, its token is
// cancelled with kTimedOut and the outcome is the failure "timed out after X s" (whatever the
// handler returned; its result, if any, becomes the failure's detail).
//
// Thread-safe. Completion callbacks run on a pool thread after the slot was freed; they must be
// short (post elsewhere) and may call tryRun/cancel.
class Runner {
 public:
  // (task id, outcome) of one run.
  using Completion = std::function<void(const std::string& task_id, HandlerResult result)>;

  explicit Runner(int slots);
  ~Runner();  // stop()
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Starts `handler` on `ctx` in a free slot and returns true; `done` is called once with the
  // outcome. Returns false (and never calls `done`) when no slot is free, when a task with this
  // id is already running, or after stop().
  bool tryRun(TaskContext ctx, Handler handler, Completion done);
  // Cancels the run of `task_id` with `reason`; false when no such run (or it was already
  // cancelled). Its completion still comes.
  bool cancel(const std::string& task_id, CancelReason reason = CancelReason::kCancelled);
  // Runs accepted and not completed yet (their completion callbacks may still be running).
  int runningCount() const;
  int slots() const { return slots_; }
  bool running(const std::string& task_id) const;
  // `fn` is called (on a pool thread, after the run's completion callback) each time a slot
  // frees, so a user waiting for a slot retries at once instead of polling. It must be short and
  // may call tryRun. Returns an id for removeSlotListener.
  uint64_t addSlotListener(std::function<void()> fn);
  // After it returns, `fn` is not called again (a call already under way may still finish).
  void removeSlotListener(uint64_t id);
  // Refuses new runs, cancels every run with kShutdown, waits for them (completions included)
  // and joins the threads. Idempotent; must not be called from a completion callback.
  void stop();

 private:
  struct Job {
    TaskContext ctx;
    Handler handler;
    Completion done;
  };
  struct Active {
    CancelToken token;
    std::optional<base::TimePoint> deadline;  // set when the run starts
  };

  void work();
  void watchdog();

  const int slots_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // jobs queued or stopping
  std::condition_variable dog_cv_;   // deadlines changed or stopping
  std::vector<Job> queue_;           // accepted, not picked up yet (never more than free slots)
  std::map<std::string, Active> active_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
  std::map<uint64_t, std::function<void()>> slot_listeners_;  // under mu_
  uint64_t next_listener_ = 1;
  std::thread watchdog_;
};

}  // namespace drover::worker

#pragma once

// The leader's firer of cron schedules (docs/WORKFLOWS.md "Schedules"). It follows /schedules,
// and at each slot of each schedule submits the task `{schedule-id}-{slot}`, then advances the
// schedule's firing state with a versioned write fenced by the leader's /epoch. The submit is
// idempotent (an existing id with an equal spec is a repeat), so a firing interrupted between
// its submit and its state write (a leader killed, a lost connection) is fired again by the
// next try or the next leader without a second task: each slot fires exactly once.
//
// The firer knows nothing of how tasks are stored: it submits and looks tasks up through
// callbacks its owner gives (the leader role adapts the API's TaskService).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "base/executor.h"
#include "coord/coordination.h"
#include "scheduler/schedule.h"
#include "tasks/layout.h"
#include "tasks/task.h"

namespace drover::scheduler {

class ScheduleFirer {
 public:
  // What a submit did. kSubmitted and kRepeat both mean the slot's task exists now.
  enum class Submitted { kSubmitted, kRepeat, kRefused, kRetry };
  // Where a previously fired task is: kActive (not terminal), kDone (terminal, or gone with
  // retention), kUnknown (cannot tell now: try later).
  enum class Progress { kActive, kDone, kUnknown };

  struct Callbacks {
    // Submits one task; may block (it runs on the firer's executor). kRefused: the id exists
    // with another spec, or the submit was refused as bad (the slot is skipped and logged); kRetry:
    // try the slot again later.
    std::function<Submitted(const tasks::TaskSpec&)> submit;
    std::function<Progress(const std::string& task_id)> progress;
    // The wall clock in Unix milliseconds (slots are wall-clock times).
    std::function<int64_t()> now_ms;
    // The epoch fence refused a state write: another node leads. Called on the executor; the
    // firer has stopped itself first.
    std::function<void(const std::string& reason)> fenced;
  };

  struct Options {
    // catchup "none": a slot found at most this late still fires (a leader takes a moment to
    // start); older ones are skipped.
    std::chrono::seconds on_time{10};
    // The longest wait between two passes (a backstop for wall-clock jumps and missed watches).
    std::chrono::milliseconds max_wait{5000};
    // Bound on each coordination call; past it the call counts as ambiguous.
    std::chrono::milliseconds call_timeout{10000};
  };

  // `epoch` is the /epoch data version this leadership holds. The firer runs every step on
  // `executor` (its own thread in a node: submits block) and must be stopped before the executor
  // and the coordination go. Not thread-safe apart from stop().
  ScheduleFirer(coord::Coordination& coord, const tasks::Layout& layout, int32_t epoch,
                base::Executor& executor, Callbacks callbacks, Options options);
  ScheduleFirer(coord::Coordination& coord, const tasks::Layout& layout, int32_t epoch,
                base::Executor& executor, Callbacks callbacks)
      : ScheduleFirer(coord, layout, epoch, executor, std::move(callbacks), Options{}) {}
  ~ScheduleFirer();
  ScheduleFirer(const ScheduleFirer&) = delete;
  ScheduleFirer& operator=(const ScheduleFirer&) = delete;

  // Posts the first pass (reads /schedules, creating it if missing).
  void start();
  // From any thread: nothing runs after it returns, except a pass already running on the
  // executor (which stops at its next step). Idempotent.
  void stop();

  // Counters since start (for tests and metrics).
  struct Stats {
    int64_t fired = 0;    // slots whose task this firer submitted or found submitted
    int64_t skipped = 0;  // slots passed over (overlap, catchup)
    int64_t retries = 0;  // failed submits or state writes, tried again later
  };
  Stats stats() const;

 private:
  struct Entry {
    ScheduleSpec spec;
    std::optional<SlotTimes> times;  // nullopt: unreadable spec (logged once)
    ScheduleState state;
    int32_t version = -1;  // the state's data version
  };
  struct Shared;  // what watches may touch after the firer is gone

  void pass();
  bool reload();
  // Fires what is due for one schedule; false when the pass must stop (fenced or stopped).
  bool fireDue(Entry& e, int64_t now_s);
  enum class Wrote { kOk, kReread, kFenced };
  Wrote writeState(Entry& e, const ScheduleState& next);
  void arm(int64_t delay_ms);
  bool running() const;

  coord::Coordination& coord_;
  const tasks::Layout& layout_;
  const int32_t epoch_;
  base::Executor& executor_;
  const Callbacks callbacks_;
  const Options options_;
  std::shared_ptr<Shared> shared_;

  // Executor thread only.
  std::map<std::string, Entry> entries_;
  bool dirty_ = true;
  base::TimerId timer_ = 0;
  bool armed_ = false;
};

}  // namespace drover::scheduler

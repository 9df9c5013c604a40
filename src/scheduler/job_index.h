#pragma once

// The leader's in-memory index of the pending jobs: the ones ready to assign in assignment order
// (higher priority first, then FIFO by the job node's creation zxid), the delayed ones (a retry
// in backoff) by the wall-clock ms they become due. A cache of /jobs: the tree is the truth, and
// a stale entry can only make a versioned assign fail.
//
// Not thread-safe: owned by the scheduler's executor thread.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "scheduler/routing.h"
#include "tasks/task.h"

namespace drover::scheduler {

class JobIndex {
 public:
  struct Entry {
    tasks::Job job;
    int32_t version = 0;  // the job node's data version, for the versioned delete
    int64_t czxid = 0;    // FIFO order within a priority
    // What the assigned status keeps from the pending one (the rest comes from the job): kept
    // apart from a whole TaskStatus, so that a pending job costs the leader one spec of memory.
    int64_t submitted_at = 0;
    std::string error;
    int bucket = 0;
    // Protocol v2: the task's batch and index (its token is the batch's pending state).
    std::string batch;
    uint32_t index = 0;
  };

  // Adds the job, or replaces the entry of the same id. Ready when its not_before is at or
  // before `now` (wall-clock ms), else delayed until then.
  void add(Entry entry, int64_t now);
  // Forgets `id` (absent: nothing happens).
  void drop(const std::string& id);
  // Removes and returns `id`'s entry. Precondition: contains(id).
  Entry take(const std::string& id);
  bool contains(const std::string& id) const { return jobs_.count(id) != 0; }

  // The first ready entry in assignment order. Precondition: ready() > 0.
  const Entry& next() const { return jobs_.at(ready_.begin()->id); }
  // The first ready entry in assignment order among the routes not in `blocked` (routes that
  // cannot take a task now must not hold up the others); nullptr when there is none.
  const Entry* nextExcept(const std::set<Route>& blocked) const;
  // How many ready entries each route has.
  std::map<Route, size_t> readyByRoute() const;
  size_t ready() const { return ready_.size(); }
  size_t delayed() const { return delayed_.size(); }
  // Of the delayed, those not yet run (a run_at ahead): what GET shows `waiting`; the rest wait
  // out a retry's backoff, which GET shows `pending`. O(delayed).
  size_t delayedFirstRuns() const;
  size_t size() const { return jobs_.size(); }
  const std::map<int, size_t>& readyByPriority() const { return ready_by_priority_; }

  // When the first delayed entry becomes due (wall-clock ms); nullopt when none waits.
  std::optional<int64_t> nextDue() const;
  // Makes every delayed entry due at `now` ready; returns how many.
  size_t promote(int64_t now);

 private:
  struct ReadyKey {
    int priority;
    int64_t czxid;
    std::string id;
    bool operator<(const ReadyKey& o) const {
      if (priority != o.priority) return priority > o.priority;
      if (czxid != o.czxid) return czxid < o.czxid;
      return id < o.id;
    }
  };
  void unlink(const Entry& entry);

  std::map<std::string, Entry> jobs_;  // every entry, ready or delayed
  std::set<ReadyKey> ready_;
  std::map<Route, std::set<ReadyKey>> ready_by_route_;
  std::set<std::pair<int64_t, std::string>> delayed_;  // (not_before, id)
  std::map<int, size_t> ready_by_priority_;
};

}  // namespace drover::scheduler

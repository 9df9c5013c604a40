#pragma once

// The leader's in-memory index of the waiting tasks: the ones ready to assign in assignment
// order (higher priority first, then FIFO: the batch's pending state creation zxid, then the
// task's index in the batch), the delayed ones (a run_at or a retry's backoff ahead) by the
// wall-clock ms they become due. A cache of /pending: the tree is the truth, and a stale entry
// can only make a versioned assign fail.
//
// An entry shares its batch record (the PendingTracker's cached copy, immutable) instead of
// copying the spec, and is found by (record, index) instead of by id: a waiting task costs the
// leader a few dozen bytes here, not a spec and three copies of its id (docs/PERFORMANCE.md).
//
// Not thread-safe: owned by the scheduler's executor thread.

#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "scheduler/routing.h"
#include "tasks/batch.h"
#include "tasks/task.h"

namespace drover::scheduler {

class JobIndex {
 public:
  // A task's place in the index: its batch record's address (unique while an entry holds the
  // record) and its index in the batch.
  struct Key {
    uintptr_t record = 0;
    uint32_t index = 0;
    auto operator<=>(const Key&) const = default;
  };
  static Key keyOf(const tasks::BatchRecord* record, uint32_t index) {
    return Key{reinterpret_cast<uintptr_t>(record), index};
  }

  struct Entry {
    std::shared_ptr<const tasks::BatchRecord> record;  // holds the spec; never null
    uint32_t index = 0;                                // in record->tasks
    int attempt = 1;                                   // the attempt it will run as
    int64_t not_before = 0;  // wall-clock ms before which it must not be assigned
    int64_t order = 0;       // FIFO within a priority (smaller first)
    std::string error;       // the previous attempt's error ("" if none)

    const tasks::TaskSpec& spec() const { return record->tasks[index]; }
    const std::string& batch() const { return record->name; }
    Key key() const { return keyOf(record.get(), index); }
  };

  // Adds the entry, or replaces the one with the same key. Ready when its not_before is at or
  // before `now` (wall-clock ms), else delayed until then. Precondition: entry.record holds
  // entry.index.
  void add(Entry entry, int64_t now);
  // Forgets `key` (absent: nothing happens).
  void drop(Key key);
  // Removes and returns `key`'s entry. Precondition: contains(key).
  Entry take(Key key);
  bool contains(Key key) const { return jobs_.count(key) != 0; }

  // The first ready entry in assignment order. Precondition: ready() > 0.
  const Entry& next() const { return jobs_.at(ready_.begin()->key); }
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
    int64_t order;
    Key key;
    bool operator<(const ReadyKey& o) const {
      if (priority != o.priority) return priority > o.priority;
      if (order != o.order) return order < o.order;
      return key < o.key;
    }
  };
  static ReadyKey readyKey(const Entry& e) { return ReadyKey{e.spec().priority, e.order, e.key()}; }
  void unlink(const Entry& entry);

  std::map<Key, Entry> jobs_;  // every entry, ready or delayed
  std::set<ReadyKey> ready_;
  std::map<Route, std::set<ReadyKey>> ready_by_route_;
  std::set<std::pair<int64_t, Key>> delayed_;  // (not_before, key)
  std::map<int, size_t> ready_by_priority_;
};

}  // namespace drover::scheduler

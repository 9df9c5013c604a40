#pragma once

// The leader's in-memory index of the waiting tasks: the ones ready to assign in assignment
// order (higher priority first, then FIFO: the batch's order, which is its pending state's
// creation zxid, then the task's index in the batch), the delayed ones (a run_at or a retry's
// backoff ahead) by the wall-clock ms they become due. A cache of /pending: the tree is the
// truth, and a stale entry can only make a versioned assign fail.
//
// Memory is what bounds a backlog (docs/PERFORMANCE.md "Leader memory"), so ready tasks are not
// kept one node each: the ready tasks of one batch record that share a priority and a route are
// a run, a bitmap over the record's indices (a fresh 1,000-task batch is one run of 128 bytes).
// The spec stays in the record the runs share (the PendingTracker's packed copy, immutable); a
// ready task's attempt and previous error are stored only when they are not a first attempt's.
// Delayed tasks are kept one entry each (a delayed backlog is the rarer case).
//
// Not thread-safe: owned by the scheduler's executor thread.

#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "scheduler/packed_record.h"
#include "scheduler/routing.h"

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
  static Key keyOf(const PackedRecord* record, uint32_t index) {
    return Key{reinterpret_cast<uintptr_t>(record), index};
  }

  struct Entry {
    std::shared_ptr<const PackedRecord> record;  // holds the spec; never null
    uint32_t index = 0;                          // in the record
    int attempt = 1;                             // the attempt it will run as
    int64_t not_before = 0;  // wall-clock ms before which it must not be assigned (a ready
                             // entry read back from the index says 0)
    int64_t order = 0;       // its batch's FIFO place within a priority (smaller first): one value
                             // for every entry of one record; the index breaks ties
    std::string error;       // the previous attempt's error ("" if none)

    int priority() const { return record->priority(index); }
    std::string id() const { return record->id(index); }
    const Route& route() const { return record->route(index); }
    const std::string& batch() const { return record->name(); }
    Key key() const { return keyOf(record.get(), index); }
  };

  // Adds the entry, or replaces the one with the same key. Ready when its not_before is at or
  // before `now` (wall-clock ms), else delayed until then. Preconditions: entry.record holds
  // entry.index; while the index holds ready entries of a record, they all carry one order.
  void add(Entry entry, int64_t now);
  // Forgets `key` (absent: nothing happens).
  void drop(Key key);
  // Removes and returns `key`'s entry. Precondition: contains(key).
  Entry take(Key key);
  bool contains(Key key) const;

  // The first ready entry in assignment order. Precondition: ready() > 0.
  Entry next() const { return *nextExcept({}); }
  // The first ready entry in assignment order among the routes not in `blocked` (routes that
  // cannot take a task now must not hold up the others); nullopt when there is none.
  std::optional<Entry> nextExcept(const std::set<Route>& blocked) const;
  // How many ready entries each route has.
  std::map<Route, size_t> readyByRoute() const;
  size_t ready() const { return ready_count_; }
  size_t delayed() const { return delayed_.size(); }
  // Of the delayed, those not yet run (a run_at ahead): what GET shows `waiting`; the rest wait
  // out a retry's backoff, which GET shows `pending`. O(delayed).
  size_t delayedFirstRuns() const;
  size_t size() const { return ready_count_ + delayed_jobs_.size(); }
  const std::map<int, size_t>& readyByPriority() const { return ready_by_priority_; }

  // When the first delayed entry becomes due (wall-clock ms); nullopt when none waits.
  std::optional<int64_t> nextDue() const;
  // Makes every delayed entry due at `now` ready; returns how many.
  size_t promote(int64_t now);

 private:
  // The ready tasks of one record with one priority and route: a bitmap over its indices.
  struct Run {
    std::vector<uint64_t> bits;
    size_t count = 0;
    mutable size_t low = 0;  // no bit is set in the words before this one (first() moves it)
    bool test(uint32_t index) const;
    void set(uint32_t index);
    void clear(uint32_t index);
    uint32_t first() const;  // precondition: count > 0
  };
  struct RunKey {
    int priority;
    int64_t order;
    uintptr_t record;
    bool operator<(const RunKey& o) const {
      if (priority != o.priority) return priority > o.priority;
      if (order != o.order) return order < o.order;
      return record < o.record;
    }
  };
  struct RouteRuns {
    std::map<RunKey, Run> runs;
    size_t count = 0;
  };
  // A record with ready tasks: kept alive by the index while it has any.
  struct Held {
    std::shared_ptr<const PackedRecord> record;
    int64_t order = 0;
    size_t ready = 0;
  };
  // A ready entry's fields when they are not a first attempt's (attempt 1, no error).
  struct Retry {
    int attempt = 1;
    std::string error;
  };

  void addReady(Entry entry);
  // The run `key` would be in, when its record has ready entries; nullptr otherwise.
  Run* runOf(Key key, RouteRuns** route_runs, std::map<RunKey, Run>::iterator* at);
  // Removes a ready entry; returns it when `out`. False: it was not ready.
  bool dropReady(Key key, Entry* out);
  Entry makeEntry(const Held& held, uint32_t index) const;

  std::unordered_map<uintptr_t, Held> records_;
  std::map<Route, RouteRuns> ready_;
  std::map<Key, Retry> retries_;
  size_t ready_count_ = 0;
  std::map<int, size_t> ready_by_priority_;
  std::map<Key, Entry> delayed_jobs_;
  std::set<std::pair<int64_t, Key>> delayed_;  // (not_before, key)
};

}  // namespace drover::scheduler

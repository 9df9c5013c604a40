#pragma once

// Protocol v2, dependencies (docs/ZNODES.md "Dependencies (issue 10): decisions"): the leader's
// part. It keeps waiting tasks whose dependencies have not all succeeded out of the JobIndex
// (PendingTracker asks hold() before indexing a waiting task), in a DependencyIndex. It learns
// outcomes from the event log (one record per multi; followed only while something is blocked)
// and, for dependencies it has no outcome of (a new leader, a trimmed log), from their result
// records. A dependent whose dependencies all succeeded is released into the JobIndex with no
// write; one whose dependency failed or was cancelled is cancelled, transitively, with one fenced
// Builder::cancelWaiting multi per batch.
//
// Threads: driven by its scheduler on the scheduler's executor (LeaderContext); not thread-safe.

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "scheduler/dependency_index.h"
#include "scheduler/leader_context.h"
#include "scheduler/pending_tracker.h"
#include "tasks/batch.h"

namespace drover::scheduler {

class DependencyTracker {
 public:
  using Wall = std::function<int64_t()>;
  DependencyTracker(const LeaderContext& ctx, PendingTracker& pending, Wall wall);

  // PendingTracker's hook: whether waiting task `index` of `batch` stays out of the JobIndex
  // (it has dependencies not known to have succeeded).
  bool hold(const PendingTracker::Batch& batch, uint32_t index);
  // PendingTracker's hook: the task no longer waits (assigned, cancelled, its batch gone).
  void left(const tasks::TaskRef& ref);
  // Housekeeping (each sweep): reads the outcomes of dependencies with none known, and retries
  // cancels that did not go through.
  void check();

  // Retention expired `batch`: the outcomes kept of its tasks go (a dependent submitted later
  // names a task that no longer exists, which the API refuses).
  void forgetBatch(const std::string& batch);

  size_t blocked() const { return index_.size(); }
  size_t outcomesKept() const { return index_.outcomesKept(); }
  uint64_t cancelled() const { return cancelled_; }
  uint64_t released() const { return released_n_; }

 private:
  void apply(const DependencyIndex::Changes& changes, const tasks::TaskRef* self = nullptr);
  void addResolved(const tasks::TaskRef& ref, const std::string& id,
                   const std::vector<tasks::TaskRef>& deps, const std::vector<std::string>& ids);
  // Whether the pending states say `dep` still waits (or are not read yet).
  bool open(const tasks::TaskRef& dep) const;
  // Reads the result records of dependencies with no outcome known (all, or the new ones).
  void resolveUnknown(bool all);
  void readOutcomes(const std::string& batch, std::set<uint32_t> indices);
  void outcome(const tasks::TaskRef& ref, tasks::State state);
  void writeCancels(const std::string& batch);
  // The event log, while something is blocked.
  void follow();
  void listEvents();
  void readEvents(std::vector<std::pair<uint64_t, std::string>> fresh);

  const LeaderContext& ctx_;
  PendingTracker& pending_;
  const Wall wall_;
  DependencyIndex index_;
  std::set<tasks::TaskRef> released_;          // dependents released: index them as any task
  std::set<tasks::TaskRef> resolving_;         // waiting for their id entries' reads
  std::map<tasks::TaskRef, std::string> ids_;  // blocked tasks' ids (for reasons)
  std::map<std::string, std::map<uint32_t, std::string>> cancels_;  // batch -> index -> reason
  std::set<std::string> cancelling_;  // batches with a cancel multi in flight
  std::set<std::string> reading_;     // batches whose results are being read
  std::set<tasks::TaskRef> asked_;    // dependencies whose results were read once
  bool following_ = false;            // the event log's child watch is armed
  bool listing_ = false;
  int64_t seen_ = -1;  // last event record read (-1: no baseline)
  uint64_t cancelled_ = 0;
  uint64_t released_n_ = 0;
};

}  // namespace drover::scheduler

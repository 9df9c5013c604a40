#pragma once

// Protocol v2, dependencies (docs/ZNODES.md "Dependencies: decisions"): the leader's in-memory
// index of waiting tasks that wait for other tasks. A dependent is held out of the JobIndex
// until every task it depends on has succeeded; then it is released (assignable, with no write).
// When one of them fails or is cancelled, the dependent is cancelled, and so on down the graph:
// `outcome()` returns the whole set to cancel, each with its reason, for the leader to write in
// one multi per batch (tasks::v2::Builder::cancelWaiting).
//
// The index learns outcomes from its owner (the event log, or result records read for
// dependencies it has never seen an outcome of: `unresolved()`). It reads nothing itself.
//
// Threads: driven on the scheduler's executor; not thread-safe.

#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tasks/batch.h"
#include "tasks/task.h"

namespace drover::scheduler {

class DependencyIndex {
 public:
  struct Cancel {
    tasks::TaskRef task;
    std::string reason;  // "dependency {id} failed" / "... was cancelled"
  };
  struct Changes {
    std::vector<tasks::TaskRef> released;  // every dependency succeeded: assignable now
    std::vector<Cancel> cancelled;         // a dependency (transitively) did not succeed
  };

  // `task` (spelled `id` in reasons) waits for `deps` (their ids in `dep_ids`, same order).
  // Outcomes known already count at once: the returned changes may release or cancel it.
  Changes add(const tasks::TaskRef& task, const std::string& id,
              const std::vector<tasks::TaskRef>& deps, const std::vector<std::string>& dep_ids);
  // A task reached `state` (terminal states only matter). Returns what follows from it.
  Changes outcome(const tasks::TaskRef& task, tasks::State state);
  // The task left the leader's view another way (cancelled by a user, its batch expired).
  void drop(const tasks::TaskRef& task);
  // Outcomes kept for `batch` are forgotten (retention deleted it). The index keeps an outcome
  // only of a task something waited for, or that it cancelled itself.
  void forgetBatch(const std::string& batch);

  bool blocked(const tasks::TaskRef& task) const { return waiting_.count(task) > 0; }
  // The ids a blocked task still waits for (empty when it is not blocked).
  std::vector<std::string> waitingFor(const tasks::TaskRef& task) const;
  // Dependencies of blocked tasks with no outcome known to the index (the owner reads them).
  std::vector<tasks::TaskRef> unresolved() const;
  size_t size() const { return waiting_.size(); }
  // Outcomes kept (of tasks something waited for).
  size_t outcomesKept() const { return known_.size(); }

 private:
  struct Waiter {
    std::string id;
    std::map<tasks::TaskRef, std::string> open;  // dependencies not succeeded yet -> their ids
  };
  // Cancels `task` and, transitively, every blocked task that waits for it.
  void cancelDown(const tasks::TaskRef& task, std::string reason, Changes& out);

  std::map<tasks::TaskRef, Waiter> waiting_;
  std::map<tasks::TaskRef, std::set<tasks::TaskRef>> dependents_;  // dependency -> waiters
  std::map<tasks::TaskRef, tasks::State> known_;  // terminal outcomes of dependencies seen
};

}  // namespace drover::scheduler

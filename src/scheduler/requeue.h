#pragma once

// Moves a dead worker's assignments back (docs/ZNODES.md, "worker died"): each task whose
// attempts are left becomes a job of attempt + 1 (status `pending`), one whose last attempt was
// lost becomes `failed`, a finished task's leftover assignment is only deleted; each in one
// fenced multi that consumes the assignment at the version read. Then the worker's empty
// /assignments folder goes, once older than a grace period.
//
// Threads: driven by its scheduler on the scheduler's executor (LeaderContext); not thread-safe.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "coord/coordination.h"
#include "scheduler/leader_context.h"

namespace drover::scheduler {

class Requeuer {
 public:
  // `alive(w)`: whether worker w is registered now (its folder is then never removed).
  Requeuer(const LeaderContext& ctx, std::chrono::milliseconds orphan_dir_grace,
           std::function<bool(const std::string&)> alive);

  // One pass over w's assignments; a pass already running for w runs again once it ends. A
  // pass that met an ambiguous write or a failed read runs again after a backoff.
  void requeueWorker(const std::string& w);

  uint64_t requeued() const { return requeued_; }  // tasks moved back to jobs
  uint64_t failed() const { return failed_; }      // tasks failed (no attempts left)

 private:
  struct RequeueState;
  void requeueTask(const std::shared_ptr<RequeueState>& state, const std::string& id,
                   const coord::Result<coord::Node>& a_read,
                   const coord::Result<coord::Node>& s_read);
  void requeueDone(const std::shared_ptr<RequeueState>& state);
  void removeOrphanDir(const std::string& w);

  const LeaderContext& ctx_;
  const std::chrono::milliseconds orphan_dir_grace_;
  const std::function<bool(const std::string&)> alive_;
  std::map<std::string, bool> requeuing_;  // worker -> redo once the current pass ends
  uint64_t requeued_ = 0;
  uint64_t failed_ = 0;
};

}  // namespace drover::scheduler

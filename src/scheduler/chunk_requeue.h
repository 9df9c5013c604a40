#pragma once

// Protocol v2: tasks going back from a chunk to their batches' pending states, in fenced multis
// built by tasks::v2::Builder.
//   - requeue: a worker left /workers. Each of its chunks is deleted (at the version read) and
//     its tasks wait again as attempt + 1 with the error "worker {w} was lost"; a task whose
//     last attempt was lost is recorded `failed` instead (the rule of the first protocol's
//     requeue). Then the empty /assignments/{w} is deleted, once older than a grace period (a
//     worker creates it just before registering).
//   - reclaim (fair assignment): a live worker's unstarted tasks leave its chunk (rewritten at
//     the version read) and wait again, same attempt, so that a higher-priority task gets the
//     place.
// Pending states are read fresh for each move (versioned writes; a BadVersion re-reads and
// retries), batch records through the PendingTracker's cache.
//
// Threads: driven by its scheduler on the scheduler's executor (LeaderContext); not thread-safe.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "scheduler/leader_context.h"
#include "scheduler/pending_tracker.h"
#include "scheduler/worker_tracker.h"
#include "tasks/protocol.h"

namespace drover::scheduler {

class ChunkRequeue {
 public:
  ChunkRequeue(const LeaderContext& ctx, PendingTracker& pending, WorkerTracker& workers,
               PendingTracker::Wall wall, std::chrono::milliseconds orphan_dir_grace,
               std::function<void()> changed);

  // w is gone: every chunk under /assignments/{w} goes back, then the folder. A pass already
  // running for w runs again once it ends.
  void requeueWorker(const std::string& w);
  // Takes `refs` out of w's chunk `name` (at `version`, as `chunk`) back to pending.
  void reclaim(const std::string& w, const std::string& name, int32_t version,
               const tasks::Chunk& chunk, const std::vector<tasks::TaskRef>& refs);
  bool reclaiming() const { return reclaims_ > 0; }
  bool requeueing(const std::string& w) const { return passes_.count(w) != 0; }
  // w's folder is known gone (requeued and removed, or found missing): pointers to it are stale.
  bool cleared(const std::string& w) const { return cleared_.count(w) != 0; }
  void markCleared(const std::string& w) { cleared_.insert(w); }

  uint64_t requeued() const { return requeued_; }
  uint64_t failed() const { return failed_; }
  uint64_t reclaimed() const { return reclaimed_; }

 private:
  struct Move {
    bool requeue = true;  // else a reclaim
    std::string worker;
    std::string name;
    int32_t version = 0;
    tasks::Chunk chunk;
    std::vector<tasks::ChunkItem> taken;
    // Read for the move: each batch's pending state (version, state) and record.
    std::map<std::string, std::pair<int32_t, tasks::PendingState>> states;
    std::map<std::string, std::shared_ptr<const PackedRecord>> records;
    size_t outstanding = 0;
    bool failed = false;
    std::function<void(bool ok)> done;  // the move committed (true) or was given up
  };
  void listChunks(const std::string& w);
  void readChunk(const std::string& w, const std::string& name, std::shared_ptr<size_t> left);
  void chunkDone(const std::string& w, std::shared_ptr<size_t> left, bool ok);
  void passDone(const std::string& w, bool clean);
  void removeFolder(const std::string& w);
  void start(std::shared_ptr<Move> move);
  void readDone(const std::shared_ptr<Move>& move);
  void send(const std::shared_ptr<Move>& move);

  const LeaderContext& ctx_;
  PendingTracker& pending_;
  WorkerTracker& workers_;
  const PendingTracker::Wall wall_;
  const std::chrono::milliseconds orphan_dir_grace_;
  const std::function<void()> changed_;
  std::map<std::string, bool> passes_;  // worker -> run again once the current pass ends
  std::map<std::string, bool> clean_;   // worker -> every chunk of the current pass went back
  std::set<std::string> cleared_;
  size_t reclaims_ = 0;
  uint64_t requeued_ = 0;
  uint64_t failed_ = 0;
  uint64_t reclaimed_ = 0;
};

}  // namespace drover::scheduler

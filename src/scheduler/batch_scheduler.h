#pragma once

// The elected leader's work under protocol v2 (docs/ZNODES.md "Protocol v2"; issue 9): tasks
// wait in batches' pending states, and the leader hands them to workers in chunks, one fenced
// multi per assignment round. The fencing contract: every leader write
// starts with check(/epoch); a multi refused there, or a lost session, stops all work and calls
// on_fenced once.
//
// The parts, each driven from here on one executor:
//   PendingTracker  /pending: the waiting tasks (the JobIndex), batch records cached
//   WorkerTracker   /workers and /assignments/{w}: what each worker may take and holds
//   ChunkAssigner   one round: who gets what, in chunks; which prefetched tasks to reclaim
//   ChunkRequeue    a dead worker's chunks back to pending (or failed); reclaims
//   BatchRetention  stale pointers, empty pending states, expired batches, old buckets
//   Cleanup         the event log's trimming
//   QueueBoard      queue settings and draining workers (shared)
//
// Threads: all state lives on one executor: its own thread, or one given by the owner (tests
// pass a ManualExecutor and drive time with its clock). start(), stop(), reconcile() and
// snapshot() are thread-safe. on_fenced runs on the executor; it may call stop() but must not
// destroy the scheduler.

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/backoff.h"
#include "base/clock.h"
#include "base/executor.h"
#include "coord/coordination.h"
#include "scheduler/batch_retention.h"
#include "scheduler/chunk_assigner.h"
#include "scheduler/chunk_requeue.h"
#include "scheduler/cleanup.h"
#include "scheduler/dependency_tracker.h"
#include "scheduler/job_index.h"
#include "scheduler/leader_context.h"
#include "scheduler/leader_stats.h"
#include "scheduler/pending_tracker.h"
#include "scheduler/queue_board.h"
#include "scheduler/strategy.h"
#include "scheduler/waiting_publisher.h"
#include "scheduler/worker_tracker.h"
#include "tasks/layout.h"
#include "tasks/protocol.h"

namespace drover::scheduler {

class BatchScheduler {
 public:
  struct Options {
    std::string strategy = "least-loaded";  // see makePicker(); unknown names fall back to it
    size_t max_round_tasks = 4096;          // tasks per assign multi
    size_t max_round_bytes = 512 * 1024;    // chunks' bytes per assign multi (limit: 1 MiB)
    base::Duration sweep_interval = base::seconds(5);  // housekeeping period
    size_t reconcile_every = 12;                       // sweeps between full re-listings (60 s)
    size_t retention_every = 6;                        // sweeps between expiry passes (30 s)
    size_t relist_ready_below = 256;
    base::Duration relist_delay = std::chrono::milliseconds(500);
    size_t events_keep = 1000;
    std::chrono::milliseconds retention_age = std::chrono::hours(24);  // finished batches
    size_t retention_count = 100000;  // finished tasks kept at most (0: by age only)
    std::chrono::milliseconds orphan_dir_grace = std::chrono::seconds(30);
    base::Duration first_assign_after = std::chrono::milliseconds(250);
    base::Backoff retry_backoff;
    // Wall-clock ms (not_before, outcome times, retention); empty: base::wallMillis. Tests tie
    // it to their manual clock.
    std::function<int64_t()> wall_ms;
    base::Duration waiting_interval = base::seconds(1);  // publishing the waiting count
    size_t max_watched = 2048;  // pending states with a data watch (PendingTracker::Options)
  };
  using Stats = LeaderStats;
  using FencedCallback = scheduler::FencedCallback;

  // Runs on a thread of its own.
  BatchScheduler(coord::Coordination& coord, tasks::Layout layout, Options options, int32_t epoch,
                 FencedCallback on_fenced);
  // Runs on `executor`, which must outlive the scheduler.
  BatchScheduler(coord::Coordination& coord, tasks::Layout layout, Options options, int32_t epoch,
                 FencedCallback on_fenced, base::Executor& executor);
  ~BatchScheduler();
  BatchScheduler(const BatchScheduler&) = delete;
  BatchScheduler& operator=(const BatchScheduler&) = delete;

  void start();
  void stop();
  void reconcile();
  // Runs the housekeeping of a sweep now (pointers, expiry, event log).
  void sweepNow();
  // Pending states read with a data watch armed, and read without one (over max_watched).
  // On the scheduler's executor.
  size_t watchedPendingStates() const;
  size_t unwatchedPendingStates() const;
  Stats snapshot() const;

 private:
  BatchScheduler(coord::Coordination& coord, tasks::Layout layout, Options options, int32_t epoch,
                 FencedCallback on_fenced, base::Executor* executor);
  struct Gate {
    std::mutex mu;
    base::Executor* executor = nullptr;
  };
  struct InFlight;
  static void postVia(const std::shared_ptr<Gate>& gate, BatchScheduler* self,
                      std::function<void()> fn);
  void post(std::function<void()> fn) { postVia(gate_, this, std::move(fn)); }
  void later(base::Duration delay, std::function<void()> fn);
  bool active() const { return running_ && !fenced_; }
  void fence(const std::string& reason);
  void onReadError(const coord::Error& error, std::function<void()> retry);
  base::Duration retryDelay();
  void publish();
  void schedulePublish();
  int64_t wall() const;

  void begin();
  void fullReconcile();
  void scheduleSweep();
  void sweep(bool housekeeping_only);
  void onSession(const coord::SessionEvent& event);
  bool draining(const std::string& w) const { return queues_->draining(w); }

  void pump();
  void send(Round round);
  void onSent(const std::shared_ptr<InFlight>& flight,
              const coord::Result<std::vector<coord::OpResult>>& r);
  void pauseFor(base::Duration delay);

  coord::Coordination& coord_;
  const tasks::Layout layout_;
  const Options options_;
  const int32_t epoch_;
  const FencedCallback on_fenced_;
  std::unique_ptr<WorkerPicker> picker_;
  std::unique_ptr<base::ThreadExecutor> own_executor_;
  base::Executor* executor_;
  std::shared_ptr<Gate> gate_;
  uint64_t listener_id_ = 0;
  std::once_flag started_;
  std::once_flag stopped_;

  mutable std::mutex stats_mu_;
  Stats stats_;

  // --- Executor state ---
  bool running_ = false;
  bool fenced_ = false;
  bool connected_ = true;
  bool paused_ = false;
  bool round_inflight_ = false;
  bool publish_posted_ = false;
  bool assign_early_ = false;
  bool initial_loaded_ = false;
  uint32_t read_failures_ = 0;
  uint64_t sweeps_ = 0;
  int64_t chunk_n_ = 0;  // the next chunk's n in c-{epoch}-{n}
  Stats counters_;

  LeaderContext ctx_;
  JobIndex index_;
  std::unique_ptr<PendingTracker> pending_;
  std::unique_ptr<DependencyTracker> deps_;  // dependents held out of index_
  std::unique_ptr<WorkerTracker> workers_;
  std::unique_ptr<ChunkRequeue> requeue_;
  std::unique_ptr<BatchRetention> retention_;
  std::unique_ptr<Cleanup> cleanup_;
  std::unique_ptr<QueueBoard> queues_;
  std::unique_ptr<ChunkAssigner> assigner_;
  std::unique_ptr<WaitingPublisher> waiting_;  // the count behind the API's max_pending_tasks
};

}  // namespace drover::scheduler

#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/backoff.h"
#include "base/clock.h"
#include "base/executor.h"
#include "coord/coordination.h"
#include "scheduler/cleanup.h"
#include "scheduler/job_index.h"
#include "scheduler/leader_context.h"
#include "scheduler/queue_board.h"
#include "scheduler/requeue.h"
#include "scheduler/strategy.h"
#include "tasks/layout.h"
#include "tasks/records.h"
#include "tasks/task.h"
#include "tasks/transitions.h"

namespace drover::scheduler {

// What the elected leader does: it keeps an in-memory index of the pending jobs (by priority,
// then FIFO by creation zxid), assigns them to live workers in batched, fenced multis, moves the
// assignments of dead workers back to jobs (or to `failed` once their attempts are used up),
// trims the event log and deletes old terminal statuses. docs/ZNODES.md is the protocol.
//
// Fencing: every write that changes a task starts with check(/epoch, epoch), the token the
// election recipe got when it won. When such a multi fails with BadVersion on that check
// (another node leads), or the session expires or is closed, the scheduler stops all work and
// calls on_fenced once with the reason; the owner must then step down. The in-memory state is a
// cache only: ZooKeeper's tree is the truth, and every write is versioned, so a stale view can
// only make a write fail, never corrupt the tree.
//
// Threads: one executor thread of its own holds all state; coordination callbacks and watches
// only post to it. start(), stop(), reconcile() and snapshot() are thread-safe. on_fenced runs
// on the scheduler's thread: it may call stop() (which then does not join), but must not
// destroy the Scheduler.
class Scheduler {
 public:
  struct Options {
    std::string strategy = "least-loaded";  // see makePicker(); unknown names fall back to it
    size_t max_batch_tasks = 200;           // tasks per assign multi
    size_t max_batch_bytes = 512 * 1024;    // estimated multi size, well under jute.maxbuffer
    size_t max_inflight_batches = 4;        // assign multis pipelined at once
    base::Duration sweep_interval = base::seconds(5);  // event-log trimming period
    // Every this many sweeps: a full reconciliation (relist every directory; watches do the
    // work in between, and a reconnect reconciles at once) and the status retention pass.
    // Both read every bucket, which an idle leader should not do every few seconds.
    size_t reconcile_every = 12;  // 60 s
    size_t retention_every = 6;   // 30 s
    // While this many jobs or more wait unassigned, a job bucket that changed is re-listed only
    // after a delay (or once the queue runs low): new jobs cannot be assigned sooner anyway,
    // and the leader's own assigns change the buckets it would re-list. The delay is
    // relist_delay, or 50 us per waiting job if longer (a bucket of a large backlog is a large
    // listing), capped at relist_delay_max: that long, at most, a new job of a higher priority
    // waits to be seen behind a backlog. 256 listings per delay instead of two per task.
    size_t relist_ready_below = 256;
    base::Duration relist_delay = std::chrono::milliseconds(500);
    base::Duration relist_delay_max = std::chrono::seconds(30);
    size_t events_keep = 1000;                                         // /events records kept
    std::chrono::milliseconds retention_age = std::chrono::hours(24);  // terminal statuses
    size_t retention_count = 100000;  // /status children kept at most
    // Bound on the statuses read (and so deleted) per retention pass. While a pass finds more
    // statuses than retention_count, retention runs every sweep instead of every
    // retention_every: up to 1,000 deletions/s at the default 5 s sweep, above the rate at
    // which this machine finishes tasks, so the count holds under sustained load.
    size_t retention_reads_per_sweep = 5000;
    // An empty /assignments/{w} with no /workers/{w} is deleted only once it is this old, so a
    // worker that creates it just before registering does not lose it.
    std::chrono::milliseconds orphan_dir_grace = std::chrono::seconds(30);
    // A new leader assigns once its first scan of the jobs is in, so that a backlog goes out in
    // priority order. A large backlog takes long to load (50,000 jobs: ~12 s here, so a 1M
    // backlog minutes), so after this long it assigns from what it has loaded so far (priority
    // order then holds within that) while the scan goes on. A few thousand jobs load within it.
    base::Duration first_assign_after = std::chrono::milliseconds(250);
    // Job reads in flight at once. The session answers in order, so an assign multi waits
    // behind every read sent before it; the window keeps that queue short during a big scan.
    // Measured (docs/PERFORMANCE.md): 512 puts a new leader's first assignment 0.4-0.6 s after
    // it takes over a 50,000 backlog (2,048: 1.0 s; unbounded: 12 s), at the price of a slower
    // first 15-30 s when a leader is still reading a fresh 100,000-200,000 backlog as it drains.
    size_t max_fetches_inflight = 512;
    base::Backoff retry_backoff;  // delay before re-reading after a failed or ambiguous call
  };

  // A consistent copy of the scheduler's counters, for metrics and the dashboard.
  struct Stats {
    bool running = false;
    bool fenced = false;
    std::string fenced_reason;
    uint64_t assigned_total = 0;   // tasks whose assign multi committed
    uint64_t requeued_total = 0;   // dead workers' tasks moved back to jobs
    uint64_t failed_total = 0;     // dead workers' tasks failed (no attempts left)
    uint64_t reclaimed_total = 0;  // protocol 2: unstarted tasks taken back for fairness
    uint64_t batches = 0;          // assign multis committed
    uint64_t batch_failures = 0;   // assign multis that failed (any reason)
    uint64_t fenced_count = 0;     // 0 or 1
    uint64_t events_trimmed = 0;
    uint64_t statuses_deleted = 0;
    size_t pending = 0;  // assignable now (not_before passed)
    size_t delayed = 0;  // waiting for their not_before
    // Protocol 2: outcomes of dependencies kept in memory (forgotten as retention expires their
    // batches).
    size_t dependency_outcomes = 0;
    std::map<int, size_t> pending_by_priority;
    std::vector<WorkerLoad> workers;  // live workers, sorted by id
  };

  using FencedCallback = std::function<void(std::string reason)>;

  // `coord` must outlive the scheduler. `epoch` is the data version of layout.epoch() that the
  // election recipe set when it won (the fencing token E).
  Scheduler(coord::Coordination& coord, tasks::Layout layout, Options options, int32_t epoch,
            FencedCallback on_fenced);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Begins: a full reconciliation, then assignment as workers and jobs are learned, and a sweep
  // every sweep_interval. Call once.
  void start();
  // Stops all work and joins the thread (unless called from it). Writes in flight may still
  // land; they are fenced and versioned like any other. Idempotent.
  void stop();
  // Asks for a full reconciliation now (e.g. after a reconnect the owner verified).
  void reconcile();

  Stats snapshot() const;

 private:
  using JobEntry = JobIndex::Entry;
  struct WorkerEntry {
    tasks::WorkerInfo info;
    bool info_loaded = false;
    bool listed = false;          // /assignments/{w} listed at least once
    bool watch_armed = false;     // a child watch on /assignments/{w} is outstanding
    std::set<std::string> tasks;  // its assignments as last listed plus ours since
    int reserved = 0;             // slots taken by assign multis in flight
    uint64_t lists_issued = 0;    // listings of /assignments/{w} sent so far
    uint64_t lists_seen = 0;      // the newest of them whose reply came in
    // Tasks our assign multis put there, with lists_issued at the moment each multi was sent:
    // listings up to that number may predate it (see onAssignments).
    std::map<std::string, uint64_t> landed;
  };
  struct BatchItem {
    std::string worker;
    JobEntry entry;
    uint64_t lists_at_send = 0;  // the worker's lists_issued when the multi was sent
  };
  struct Batch {
    std::vector<BatchItem> items;
    tasks::Decoder decoder;  // which item a failed op of its multi belongs to
  };

  // Runs `fn` on the executor (then publishes stats), unless stopped. Safe from any thread.
  void post(std::function<void()> fn);
  // The same for callbacks that may outlive the scheduler: they hold the gate, and `self` is
  // only used on the executor, which exists as long as the gate is open.
  struct Gate;
  static void postVia(const std::shared_ptr<Gate>& gate, Scheduler* self, std::function<void()> fn);
  base::TimerId later(base::Duration delay, std::function<void()> fn);
  bool active() const { return running_ && !fenced_; }
  void fence(const std::string& reason);
  // Common handling of a failed read: fence on session loss, else `retry` after a backoff.
  void onReadError(const coord::Error& error, std::function<void()> retry);
  base::Duration retryDelay();
  void publish();

  void begin();
  void fullReconcile();
  void scheduleSweep();
  void sweep();
  void onSession(const coord::SessionEvent& event);

  void listWorkers();
  void onWorkers(const coord::Result<std::vector<std::string>>& r);
  void loadWorkerInfo(const std::string& w);
  void listAssignments(const std::string& w);
  void onAssignments(const std::string& w, const coord::Result<std::vector<std::string>>& r,
                     bool watched, uint64_t seq);
  void listAssignmentRoots();

  void requeueWorker(const std::string& w) { requeuer_->requeueWorker(w); }
  // Tells the queue board what worker w holds now (entry.tasks changed).
  void noteHeld(const std::string& w);

  void listBucket(int bucket);
  // A bucket's watch fired: re-list it now, or later when enough work is queued.
  void bucketChanged(int bucket);
  void relistDirty();
  void onBucket(int bucket, const coord::Result<std::vector<std::string>>& r, bool watched);
  void fetchJob(int bucket, const std::string& id);
  void sendFetches();
  void sendFetch(int bucket, const std::string& id);
  void fetchStatus(int bucket, const std::string& id, const coord::Result<coord::Node>& job);
  void onFetched(int bucket, const std::string& id, const coord::Result<coord::Node>& job,
                 const coord::Result<coord::Node>& status);
  void addJob(JobEntry entry);
  void armDelayTimer();
  void onDelayTimer();

  void pump();
  std::vector<WorkerLoad> loads() const;
  void sendBatch(Batch batch, std::vector<coord::Op> ops);
  void onBatchDone(Batch batch, const coord::Result<std::vector<coord::OpResult>>& r);

  coord::Coordination& coord_;
  const tasks::Layout layout_;
  const Options options_;
  const int32_t epoch_;
  const FencedCallback on_fenced_;
  std::unique_ptr<WorkerPicker> picker_;

  // The path from callbacks to the executor; cut by stop() so late callbacks post nothing.
  struct Gate {
    std::mutex mu;
    base::ThreadExecutor* executor = nullptr;
  };
  std::shared_ptr<Gate> gate_;
  uint64_t listener_id_ = 0;
  std::once_flag started_;
  std::once_flag stopped_;

  mutable std::mutex stats_mu_;
  Stats stats_;

  // --- Executor-thread state ---
  bool running_ = false;
  bool fenced_ = false;
  bool connected_ = true;
  bool paused_ = false;  // after an ambiguous or failed write, until the re-read is scheduled
  uint32_t read_failures_ = 0;
  Stats counters_;  // the counters part of stats_, owned here

  bool workers_watch_armed_ = false;
  std::map<std::string, WorkerEntry> workers_;

  std::array<std::set<std::string>, tasks::Layout::kJobBuckets> bucket_known_;
  std::array<bool, tasks::Layout::kJobBuckets> bucket_armed_{};
  std::set<int> dirty_buckets_;  // changed, re-list deferred (see relist_ready_below)
  base::TimerId relist_timer_ = 0;
  uint64_t sweeps_ = 0;
  JobIndex jobs_;  // the pending jobs: ready to assign, or waiting for their not_before
  base::TimerId delay_timer_ = 0;
  int64_t delay_timer_due_ = 0;
  base::TimerId sweep_timer_ = 0;
  size_t inflight_batches_ = 0;
  // Bucket listings and job reads in flight. Nothing is assigned until the first full scan has
  // come in, so that the backlog a new leader finds goes out in priority order.
  size_t loading_ = 0;
  bool initial_loaded_ = false;                          // the first scan is in
  bool assign_early_ = false;                            // first_assign_after passed before it was
  std::deque<std::pair<int, std::string>> fetch_queue_;  // (bucket, id) not yet read
  size_t fetches_inflight_ = 0;
  struct LoadDone {  // marks one listing or read as in, whichever way its handler returns
    Scheduler& s;
    explicit LoadDone(Scheduler& scheduler) : s(scheduler) {}
    ~LoadDone();
  };

  LeaderContext ctx_;                   // what the components below get from the scheduler
  std::unique_ptr<Requeuer> requeuer_;  // dead workers' assignments back to jobs
  std::unique_ptr<Cleanup> cleanup_;    // event-log trimming and retention, driven by sweep()
  std::unique_ptr<QueueBoard> queues_;  // queue settings, draining workers, tasks per queue

  std::unique_ptr<base::ThreadExecutor> executor_;  // last: stopped before the state goes
};

}  // namespace drover::scheduler

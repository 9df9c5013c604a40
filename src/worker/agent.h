#pragma once

// The worker side of the protocol (docs/ZNODES.md): runs what the leader assigns to one worker
// id and records each outcome under the token rule.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "base/backoff.h"
#include "base/executor.h"
#include "coord/coordination.h"
#include "tasks/layout.h"
#include "tasks/records.h"
#include "tasks/task.h"
#include "tasks/transitions.h"
#include "worker/handler.h"
#include "worker/runner.h"

namespace drover::worker {

struct AgentOptions {
  // Delay before a failed task may run again: not_before = wall now + delay(attempt).
  base::Backoff retry_backoff{std::chrono::seconds(1), std::chrono::seconds(60), 2.0, 0.0};
  // Delay before re-trying a coordination call that failed retryably (connection loss, ...).
  base::Backoff zk_backoff{std::chrono::milliseconds(50), std::chrono::seconds(5), 2.0, 0.0};
  // Starts and commits ready at the same moment are combined into one multi of at most this
  // many tasks and about this many bytes (1: one multi per task).
  size_t max_batch = 32;
  size_t max_batch_bytes = 512 * 1024;
  // A task is launched as soon as it has a slot, and its `running` status is written only if it
  // still runs this long after it started: a short task goes from `assigned` straight to its
  // outcome with one write instead of two (its status still carries started_at). 0: write
  // `running` before launching, as a fence (the run starts only once the write landed).
  std::chrono::milliseconds mark_running_after{20};
};

// Counters for metrics and /v1/workers; a consistent snapshot.
struct AgentStats {
  int running = 0;              // runs in progress
  uint64_t succeeded = 0;       // commits that landed, by outcome
  uint64_t retried = 0;         //   failed with attempts left: requeued
  uint64_t failed = 0;          //   failed for good (rejected ones included)
  uint64_t rejected = 0;        // failed without running: unknown type or undecodable assignment
  uint64_t fenced_commits = 0;  // commits refused because the assignment was gone: discarded
  uint64_t dropped = 0;         // assignments taken away before they started
};

// What a node's worker role asks of the agent of either task protocol (WorkerAgent: one znode
// per task; ChunkAgent, worker/chunk_agent.h: protocol v2's chunks).
class Agent {
 public:
  virtual ~Agent() = default;
  virtual void start() = 0;
  virtual void stop() = 0;
  virtual bool dead() const = 0;
  virtual AgentStats stats() const = 0;
};

// Watches /assignments/{worker_id}, marks each new assignment running, runs it on the Runner
// and commits its outcome, each step a multi with the assignment token (see docs/ZNODES.md);
// starts and commits that are ready together share one multi. The leader may assign more tasks
// than the Runner has slots (the worker's prefetch): the surplus waits here, unstarted, in
// priority order, and starts as slots free, so a short task's next one needs no round trip to
// the leader. The worker id must already be registered (in /workers) with
// /assignments/{worker_id} created.
//
// Threads: all state lives on one executor thread of its own; coordination callbacks, watches
// and run completions only post to it. The public methods are thread-safe.
//
// Session expiry makes the agent dead(): its runs are cancelled, nothing more is written, and
// the leader moves its assignments. The owner then registers a new worker id and builds a new
// agent (it may share the Runner and the registry). The same happens if /assignments/{worker_id}
// disappears (the leader gave up on this worker).
//
// stop() (and the destructor) stops watching, cancels the runs (reason kShutdown) without
// committing them (the leader requeues them once the worker's node is gone) and waits for them.
class WorkerAgent final : public Agent {
 public:
  WorkerAgent(coord::Coordination& coord, tasks::Layout layout, std::string worker_id,
              Runner& runner, const HandlerRegistry& handlers, AgentOptions options = {});
  ~WorkerAgent();
  WorkerAgent(const WorkerAgent&) = delete;
  WorkerAgent& operator=(const WorkerAgent&) = delete;

  // Starts watching. Call once.
  void start() override;
  // See the class comment. Idempotent; must not be called from a handler or a callback.
  void stop() override;
  // True once the session this agent was started on is gone (or its assignment folder is).
  bool dead() const override;
  AgentStats stats() const override;
  const std::string& workerId() const { return worker_id_; }

 private:
  // kQueued: read and startable, held until this agent has a slot for it (the leader may assign
  // up to slots + prefetch); it is not marked running until it leaves the queue.
  enum class Phase { kFetching, kQueued, kStarting, kWaiting, kRunning, kCommitting };
  enum class Outcome { kSucceeded, kRetry, kFailed };

  // One assignment this agent holds or is learning about. Executor thread only.
  struct Item {
    std::string id;
    Phase phase = Phase::kFetching;
    int32_t version = 0;  // of the assignment node: the token's version
    int64_t czxid = 0;    // tells a later assignment with the same name from this one
    std::optional<tasks::Assignment> assignment;
    std::string reject;                       // set: fail it without running, with this error
    std::optional<tasks::TaskStatus> status;  // as read, then as we last wrote it
    bool status_exists = true;
    bool gone = false;  // it vanished from the listing
    CancelToken token;
    // The commit, once the run is done.
    Outcome outcome = Outcome::kFailed;
    tasks::TaskStatus target;
    std::optional<tasks::Job> retry_job;
    uint32_t tries = 0;         // coordination retries of the current step
    int64_t started_at = 0;     // wall ms of the launch (0: not launched yet)
    bool running_sent = false;  // the `running` write was sent (or is queued)
  };

  // State shared with callbacks that may outlive the agent's executor.
  struct Shared {
    std::mutex mu;
    base::ThreadExecutor* executor = nullptr;  // null once stopped: posts are dropped
    std::atomic<bool> dead{false};
    std::atomic<uint64_t> generation{0};  // the session's generation; 0 until known
    std::condition_variable runs_cv;
    int runs = 0;  // runs handed to the Runner whose completion has not come (under mu)

    bool post(base::Task task);
    bool postAfter(base::Duration delay, base::Task task);
  };

  // Executor thread only.
  void list();
  void onListed(const coord::Result<std::vector<std::string>>& r, bool armed);
  void markGone(Item& item);
  void fetch(const std::string& id);
  void onFetched(const std::string& id, const coord::Result<coord::Node>& r);
  void readStatus(const std::string& id);
  void onStatus(const std::string& id, const coord::Result<coord::Node>& r);
  // Starts `id` if a slot is free, else queues it (by priority, then assignment order).
  void admit(const std::string& id);
  // Starts queued items while slots are free.
  void startQueued();
  // Items holding a slot: starting, waiting for the Runner, or running.
  int slotsClaimed() const;
  void startRun(const std::string& id);
  void flushStarts();
  using MultiResult = coord::Result<std::vector<coord::OpResult>>;
  // Sends a batch's multi; `done` runs on the executor unless the agent has halted meanwhile.
  void sendBatch(tasks::Txn txn, std::function<void(const MultiResult&)> done);
  // Posts `flush` once for everything queued in this executor turn (`posted` tracks it).
  void flushSoon(bool& posted, void (WorkerAgent::*flush)());
  void startOne(const std::string& id, const tasks::TaskStatus& running);
  tasks::TaskOps startPart(const Item& item, const tasks::TaskStatus& running) const;
  // `failed`: the step of the start's own multi that failed (nullopt after a batch or a re-read).
  void onStarted(const std::string& id, const tasks::TaskStatus& running, const MultiResult& r,
                 std::optional<tasks::FailedStep> failed);
  void verifyStart(const std::string& id, const tasks::TaskStatus& running);
  void launch(const std::string& id);
  // After mark_running_after: writes `running` for a task that is still running.
  void markRunning(const std::string& id, int64_t czxid);
  void launchWaiting();
  void onRunDone(const std::string& id, HandlerResult result);
  void prepareCommit(Item& item, const HandlerResult& result);
  void queueCommit(const std::string& id);
  void flushCommits();
  tasks::TaskOps commitPart(const Item& item) const;
  void commitOne(const std::string& id);
  void onCommitted(const std::string& id, const MultiResult& r,
                   std::optional<tasks::FailedStep> failed);
  void resolve(const std::string& id);
  void resolveByStatus(const std::string& id);
  void landed(const std::string& id);
  void fenced(const std::string& id);
  void finish(const std::string& id);
  // Handles an error common to every step; true when the caller should stop (session lost).
  bool sessionGone(const coord::Error& e);
  void becomeDead(const std::string& why);
  void retryLater(Item& item, base::Task task);
  Item* find(const std::string& id);
  bool halted() const { return stopping_ || shared_->dead.load(); }
  void bump(uint64_t AgentStats::*counter);

  coord::Coordination& coord_;
  const tasks::Layout layout_;
  const std::string worker_id_;
  Runner& runner_;
  const HandlerRegistry& handlers_;
  const AgentOptions options_;

  std::shared_ptr<Shared> shared_;
  uint64_t listener_id_ = 0;
  bool listener_added_ = false;
  uint64_t slot_listener_id_ = 0;
  std::atomic<bool> started_{false};
  std::atomic<bool> stopped_{false};

  // Executor thread only.
  bool stopping_ = false;
  bool watch_armed_ = false;
  uint32_t list_tries_ = 0;
  std::map<std::string, Item> items_;
  std::set<std::string> listed_;      // the names in the last listing
  std::vector<std::string> waiting_;  // started, waiting for a Runner slot
  std::vector<std::string> ready_;    // runs done, commit not sent yet
  bool flush_posted_ = false;
  // Startable items without a slot yet, in the order they start: (-priority, czxid, id).
  std::set<std::tuple<int, int64_t, std::string>> queued_;
  // Start writes not sent yet (one multi carries those that are ready together).
  std::vector<std::pair<std::string, tasks::TaskStatus>> starts_;
  bool starts_posted_ = false;

  mutable std::mutex stats_mu_;
  AgentStats stats_;

  base::ThreadExecutor executor_;  // last: stopped first
};

}  // namespace drover::worker

#pragma once

// The worker side of protocol v2 (docs/ZNODES.md "Protocol v2"): runs the chunks the leader
// assigns to one worker id and commits their outcomes, one multi for the outcomes ready together.
// chunk_agent.cc follows the chunks and owns the lifecycle; chunk_agent_tasks.cc takes, runs and
// commits their tasks and writes the running report; chunk_commits.cc groups the commits.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "base/executor.h"
#include "coord/coordination.h"
#include "tasks/batch.h"
#include "tasks/layout.h"
#include "tasks/records.h"
#include "worker/agent.h"
#include "worker/chunk_commits.h"
#include "worker/handler.h"
#include "worker/runner.h"

namespace drover::worker {

// Watches /assignments/{worker_id}: reads each new chunk once (and again when the leader reclaims
// from it or the API cancels a task in it: tasks gone from it are dropped if unstarted, or their
// run is cancelled and its outcome discarded). Specs come inline in the chunk or from the batch
// record (read once per batch, cached). Tasks run on the Runner in priority order; the surplus
// beyond its slots (the worker's prefetch) waits unstarted and starts as slots free. Outcomes go
// to ChunkCommits. The tasks it runs now are listed in its /workers/{worker_id} record
// (WorkerInfo.running), rewritten when the set changes (at most about every 250 ms, two at once
// after a quiet spell: kReportInterval), leaving out tasks that end within mark_running_after.
//
// Lifecycle (the Agent interface, worker/agent.h; node.cc starts it): the worker id
// must be registered in /workers with /assignments/{worker_id} created; session expiry or the
// folder's disappearance make it dead() (runs cancelled, nothing more written); stop() cancels
// the runs (kShutdown) without committing them and waits for them.
//
// Threads: state lives on one executor: its own thread by default, or `executor` (a test's
// ManualExecutor; then start() and stop() must be called on the thread that runs it, or while
// it is idle). Coordination callbacks, watches and run completions only post to it. stats() and
// dead() are thread-safe.
class ChunkAgent final : public Agent {
 public:
  ChunkAgent(coord::Coordination& coord, tasks::Layout layout, std::string worker_id,
             Runner& runner, const HandlerRegistry& handlers, AgentOptions options = {},
             base::Executor* executor = nullptr);
  ~ChunkAgent();
  ChunkAgent(const ChunkAgent&) = delete;
  ChunkAgent& operator=(const ChunkAgent&) = delete;

  void start() override;
  void stop() override;
  bool dead() const override;
  AgentStats stats() const override;
  const std::string& workerId() const { return worker_id_; }

  // The running report is rewritten at most once per interval on average, with a burst of two:
  // after a quiet spell a change goes out at once (a task handed over shows as running ~20 ms
  // after it started, not up to 250 ms later), while a worker whose runs change all the time
  // still writes at most four times a second.
  static constexpr base::Duration kReportInterval = std::chrono::milliseconds(250);

 private:
  using Key = std::pair<std::string, tasks::TaskRef>;  // (chunk, task)
  enum class Phase { kSpec, kQueued, kRunning };
  struct Task {
    tasks::ChunkItem item;
    Phase phase = Phase::kSpec;
    bool gone = false;  // taken from its chunk while running: the outcome is discarded
    uint64_t seq = 0;   // read order: ties of priority start in assignment order
    CancelToken token;
    int64_t started_wall = 0;
    base::TimePoint started{};
  };
  struct ChunkView {
    std::set<tasks::TaskRef> seen;  // every task the chunk listed (tasks never re-enter one)
  };
  struct Shared : std::enable_shared_from_this<Shared> {
    std::mutex mu;
    base::Executor* executor = nullptr;  // null once stopped: posts are dropped
    std::atomic<bool> live{true};
    std::atomic<bool> dead{false};
    std::atomic<uint64_t> generation{0};
    std::condition_variable runs_cv;
    int runs = 0;
    void post(base::Task task);
    void postAfter(base::Duration delay, base::Task task);
  };

  // Executor thread only.
  void list();
  void onListed(const coord::Result<std::vector<std::string>>& r, bool armed);
  void readChunk(const std::string& name, bool watch);
  void onChunk(const std::string& name, const coord::Result<coord::Node>& r);
  void onChunkChanged(const std::string& name, bool deleted);
  void chunkGone(const std::string& name);
  void take(const std::string& chunk, tasks::ChunkItem item);
  void lose(const Key& key);
  void needBatch(const Key& key);
  void onBatch(const std::string& batch, const coord::Result<coord::Node>& r);
  void ready(const Key& key);
  void reject(const Key& key, const std::string& why);
  void startQueued();
  // `ended_ms`: wall time stamped on the Runner's thread as the handler returned (the executor
  // may process the completion later, after the slot went to another task).
  void onRunDone(const Key& key, HandlerResult result, int64_t ended_ms);
  void finished(const Key& key, Finished f);
  void onCommitDone(const Finished& f, bool landed);
  void runningChanged();
  void reportTick();
  void writeReport();
  void becomeDead(const std::string& why);
  bool sessionGone(const coord::Error& e);
  bool halted() const { return stopping_ || shared_->dead.load(); }
  void retryLater(uint32_t& tries, base::Task task);
  // An outcome discarded because its chunk no longer holds the task: stats and metric.
  void countFenced();
  template <class F>
  void bumpStats(F&& f) {
    std::lock_guard lock(stats_mu_);
    f(stats_);
  }

  coord::Coordination& coord_;
  const tasks::Layout layout_;
  const std::string worker_id_;
  Runner& runner_;
  const HandlerRegistry& handlers_;
  const AgentOptions options_;
  std::unique_ptr<base::ThreadExecutor> own_executor_;
  base::Executor& executor_;
  std::shared_ptr<Shared> shared_;
  uint64_t listener_id_ = 0;
  uint64_t slot_listener_id_ = 0;
  bool listeners_added_ = false;
  std::atomic<bool> started_{false};
  std::atomic<bool> stopped_{false};

  // Executor thread only.
  bool stopping_ = false;
  bool watch_armed_ = false;
  uint32_t list_tries_ = 0;
  std::map<std::string, ChunkView> chunks_;
  std::map<std::string, uint32_t> chunk_tries_;
  std::map<Key, Task> tasks_;
  std::set<std::tuple<int, uint64_t, Key>> queue_;  // (-priority, seq, key): start order
  uint64_t next_seq_ = 0;
  // Batch records read for specs that were not inline (a few recent ones), and tasks waiting
  // for one being read.
  std::map<std::string, std::shared_ptr<const tasks::BatchRecord>> batches_;
  std::vector<std::string> batch_order_;
  std::map<std::string, std::vector<Key>> batch_waiters_;
  std::map<std::string, uint32_t> batch_tries_;
  // The running report.
  std::map<std::string, int64_t> reported_;  // as last written
  bool report_timer_ = false;
  bool report_inflight_ = false;
  bool report_again_ = false;
  // Rate of the report (a generic cell rate rule): a write may go once now >= report_due_ -
  // kReportInterval; each write moves report_due_ to max(report_due_, now) + kReportInterval.
  base::TimePoint report_due_{};
  // The first moment the next report may be written (the burst of two: one interval early).
  base::TimePoint reportAllowedAt() const { return report_due_ - kReportInterval; }
  std::optional<tasks::WorkerInfo> info_;  // our /workers record, as read
  int32_t info_version_ = 0;
  uint32_t report_tries_ = 0;

  std::unique_ptr<ChunkCommits> commits_;

  mutable std::mutex stats_mu_;
  AgentStats stats_;
};

}  // namespace drover::worker

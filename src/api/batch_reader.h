#pragma once

// Protocol v2's reads for the API (docs/ZNODES.md "Protocol v2"): one task, a long poll on one
// task, pages of tasks newest (or oldest) first, and the cluster's counts, from batch records,
// pending states, chunks and result records. Batch records and result records are immutable, so
// they are cached. Blocking calls with deadlines, for HTTP handler threads. Thread-safe.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "api/problem.h"
#include "api/store_options.h"
#include "api/workers_reader.h"
#include "coord/coordination.h"
#include "tasks/batch.h"
#include "tasks/layout.h"
#include "tasks/task.h"

namespace drover::api {

// Where a task is now, as one consistent set of reads found it.
struct TaskPlace {
  enum class Kind { kFinished, kWaiting, kHeld };
  Kind kind = Kind::kWaiting;
  tasks::TaskRef ref;
  tasks::TaskStatus status;
  // Waiting or held: the batch's pending state and its version.
  tasks::PendingState pending;
  int32_t pending_version = 0;
  // Held: the chunk that lists the task, its version and the task's item in it.
  std::string worker;
  std::string chunk_name;
  tasks::Chunk chunk;
  int32_t chunk_version = 0;
  tasks::ChunkItem item;
};

class BatchReader {
 public:
  BatchReader(coord::Coordination& coord, tasks::Layout layout, StoreOptions options);

  StoreResult<tasks::TaskStatus> get(const std::string& id);
  // Returns once the task is terminal, or at `timeout`. Driven by watches on the records that
  // hold the task (the batch's result list, its pending state, its chunk), not by polling.
  StoreResult<tasks::TaskStatus> wait(const std::string& id, std::chrono::milliseconds timeout);
  // Pages in batch order (oldest first, cursor: a generated id, exclusive) and newest first
  // (cursor: batch time and generated id). Bounded work per page: at most kPageBatches batches
  // are opened; a page may then hold fewer than `limit` tasks and still have a `next`.
  static constexpr size_t kPageBatches = 64;
  StoreResult<TaskPage> list(std::optional<tasks::State> state, size_t limit,
                             const std::string& cursor, const TaskFilter& filter = {});
  StoreResult<TaskPage> listNewest(std::optional<tasks::State> state, size_t limit,
                                   const std::optional<NewestCursor>& after,
                                   const TaskFilter& filter = {});
  // The live workers; `assigned` counts the tasks their chunks hold (batch_counts.cc).
  StoreResult<WorkersView> workers();
  StoreResult<ClusterView> cluster();
  void interruptWaits();

  // --- For the store (api/batch_store.cc) ---
  // The task an id names: generated ids by their shape, client ids by their id entry (1 read).
  // nullopt when there is no such task.
  StoreResult<std::optional<tasks::TaskRef>> resolve(const std::string& id);
  // The batch record (cached: immutable); null when absent.
  StoreResult<std::shared_ptr<const tasks::BatchRecord>> batch(const std::string& name);
  // Where the task is now: finished (≤ 2 reads: the batch's children and the result record
  // whose range holds it; more records, cached, once it was retried), else waiting (+ the pending
  // state) or held (+ its chunk, + the worker's record to tell running from assigned). nullopt when
  // the batch is gone. `watcher` (may be null) is set on every record read that can change.
  StoreResult<std::optional<TaskPlace>> locate(const tasks::TaskRef& ref,
                                               const coord::Watcher& watcher = nullptr);

 private:
  template <class T>
  coord::Result<T> await(const coord::Future<T>& future) const {
    return awaitFor(future, options_.call_timeout);
  }
  struct View;  // the state of one batch's tasks (list)
  // The task's outcomes, oldest first (its history; the latest decides).
  StoreResult<std::vector<tasks::Outcome>> findOutcomes(const tasks::TaskRef& ref,
                                                        const coord::Watcher& watcher);
  StoreResult<std::shared_ptr<const tasks::ResultRecord>> resultRecord(const std::string& batch,
                                                                       const std::string& child);
  // The caches of immutable records: a lookup (null when not cached), and the decoding of a
  // read record into the cache (null when it does not exist). Pipelined readers (countTasks)
  // issue the reads themselves.
  std::shared_ptr<const tasks::BatchRecord> cachedBatch(const std::string& name);
  StoreResult<std::shared_ptr<const tasks::BatchRecord>> keepBatch(
      const std::string& name, const coord::Result<coord::Node>& node);
  std::shared_ptr<const tasks::ResultRecord> cachedResults(const std::string& key);
  StoreResult<std::shared_ptr<const tasks::ResultRecord>> keepResults(
      const std::string& key, const coord::Result<coord::Node>& node);
  // The children of each path, read pipelined; a path that is gone has none.
  StoreResult<std::vector<std::vector<std::string>>> childrenOfAll(
      const std::vector<std::string>& paths);
  StoreResult<std::map<std::string, int64_t>> runningOn(const std::string& worker);
  StoreResult<TaskPage> page(bool newest, std::optional<tasks::State> state, size_t limit,
                             std::optional<tasks::TaskRef> after, const TaskFilter& filter);
  StoreResult<std::vector<std::string>> sortedChildren(const std::string& path);
  // `workers`: the live workers as cluster() read them (whose records tell running tasks).
  StoreResult<std::map<tasks::State, size_t>> countTasks(const WorkersView& workers);

  coord::Coordination& coord_;
  const tasks::Layout layout_;
  const StoreOptions options_;
  WorkersReader registry_;  // /workers and /leader

  // Immutable records, bounded by bytes (oldest entries go first).
  std::mutex cache_mu_;
  std::map<std::string, std::shared_ptr<const tasks::BatchRecord>> batches_;
  std::map<std::string, std::shared_ptr<const tasks::ResultRecord>> results_;  // batch/child
  std::deque<std::pair<std::string, size_t>> cache_order_;                     // key, bytes
  size_t cache_bytes_ = 0;
  void remember(const std::string& key, size_t bytes);

  // cluster(): per batch, the counts of its tasks' terminal outcomes (frozen once the batch is
  // finished: its records are immutable then), and the counts themselves, reused for
  // counts_ttl or twice as long as the last count took, whichever is longer.
  struct Tally {
    uint32_t succeeded = 0, failed = 0, cancelled = 0;
    bool frozen = false;
  };
  std::mutex counts_mu_;
  std::map<std::string, Tally> tallies_;
  std::string partial_cursor_;  // the unfinished batch re-tallied last (a large backlog)
  bool counting_ = false;       // one count at a time; others take the last one meanwhile
  std::chrono::steady_clock::duration count_cost_{};
  std::optional<std::pair<std::chrono::steady_clock::time_point, std::map<tasks::State, size_t>>>
      counts_cache_;

  struct WaitSignal;
  std::mutex waits_mu_;
  std::set<std::shared_ptr<WaitSignal>> waits_;
  std::atomic<bool> interrupted_{false};
};

// Status builders shared with the store: the task as GET /v1/tasks/{id} shows it.
tasks::TaskStatus finishedStatus(const tasks::BatchRecord& batch, uint32_t index,
                                 const tasks::Outcome& outcome);
tasks::TaskStatus waitingStatus(const tasks::BatchRecord& batch, uint32_t index,
                                const tasks::Waiting& waiting);
tasks::TaskStatus heldStatus(const tasks::BatchRecord& batch, const tasks::ChunkItem& item,
                             const std::string& worker,
                             const std::map<std::string, int64_t>& running);

}  // namespace drover::api

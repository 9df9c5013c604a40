#pragma once

// The API's reads of the znode tree: one task, a long poll on one task, pages of tasks, the
// workers and the cluster's counts. Blocking calls with deadlines, for HTTP handler threads.
// Thread-safe: every method may be called from many threads at once.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "api/problem.h"
#include "api/store_options.h"
#include "coord/coordination.h"
#include "tasks/layout.h"
#include "tasks/records.h"
#include "tasks/task.h"

namespace drover::api {

class TaskReader {
 public:
  TaskReader(coord::Coordination& coord, const tasks::Layout& layout, const StoreOptions& options);

  // The current status; kNotFound if absent. `id` must pass base::isValidName.
  StoreResult<tasks::TaskStatus> get(const std::string& id);

  // Long poll: returns once the task is terminal, or at `timeout` with its state then. Driven by
  // a data watch on /status/{id}, not by polling.
  StoreResult<tasks::TaskStatus> wait(const std::string& id, std::chrono::milliseconds timeout);

  // Statuses sorted by id, after `cursor` (exclusive), at most `limit`, optionally of one state
  // and of one type and queue (`filter`).
  StoreResult<TaskPage> list(std::optional<tasks::State> state, size_t limit,
                             const std::string& cursor, const TaskFilter& filter = {});

  // Statuses newest first: by creation zxid (a cluster-wide order of submits; the tasks of one
  // batch share one, then higher ids come first), after `after` (exclusive). `next` is
  // "<czxid>-<id>". Costs a stat read per retained status.
  StoreResult<TaskPage> listNewest(std::optional<tasks::State> state, size_t limit,
                                   const std::optional<NewestCursor>& after,
                                   const TaskFilter& filter = {});

  StoreResult<WorkersView> workers();
  StoreResult<ClusterView> cluster();

  // Makes every wait() in progress, and every later one, return at once with the state it has
  // read (for shutting the HTTP server down without holding it for a long poll).
  void interruptWaits();

  // One status; nullopt when absent. Undecodable is an error.
  StoreResult<std::optional<tasks::TaskStatus>> readStatus(const std::string& id);
  // Reads many statuses pipelined; absent ones are nullopt. Undecodable ones are an error.
  StoreResult<std::vector<std::optional<tasks::TaskStatus>>> readStatuses(
      const std::vector<std::string>& ids);

 private:
  struct WaitSignal {
    std::mutex mu;
    std::condition_variable cv;
    bool fired = false;
  };

  template <class T>
  coord::Result<T> await(const coord::Future<T>& future) const {
    return awaitFor(future, options_.call_timeout);
  }
  StoreResult<std::optional<LeaderInfo>> readLeader();
  StoreResult<std::map<tasks::State, size_t>> countTasks();
  // Reads the statuses of ids[from..], pipelined, into `page` until it holds `limit` tasks (of
  // `state` and `filter`, when given; absent ones are skipped); returns the index after the last id
  // taken or passed over.
  StoreResult<size_t> fillPage(const std::vector<std::string>& ids, size_t from,
                               std::optional<tasks::State> state, const TaskFilter& filter,
                               size_t limit, TaskPage& page);
  // The ids of every status, from all status buckets (listed pipelined), unsorted.
  StoreResult<std::vector<std::string>> statusIds(const char* what);

  coord::Coordination& coord_;
  const tasks::Layout& layout_;
  const StoreOptions& options_;

  std::mutex waits_mu_;
  std::set<std::shared_ptr<WaitSignal>> waits_;
  std::atomic<bool> interrupted_{false};

  std::mutex counts_mu_;
  std::optional<std::pair<std::chrono::steady_clock::time_point, std::map<tasks::State, size_t>>>
      counts_cache_;
};

}  // namespace drover::api

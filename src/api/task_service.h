#pragma once

// What the HTTP layer (http.cc, http_routing.cc) and the other front ends ask of the task
// protocol: BatchStore (api/batch_store.h, batch records, docs/ZNODES.md "Protocol v2") is the
// implementation; unit tests may put their own behind it.
//
// Thread-safe: every method may be called from many HTTP threads at once; each blocks for at
// most about the store's deadlines. Failures are values (api/problem.h), one HTTP status each.

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "api/problem.h"
#include "api/queue_admin.h"
#include "api/store_options.h"
#include "coord/coordination.h"
#include "tasks/layout.h"
#include "tasks/task.h"

namespace drover::api {

class TaskService {
 public:
  virtual ~TaskService() = default;

  // A task submitted without an id comes with an empty one: the store names it
  // "{batch}.{index}" (docs/ZNODES.md), with no id entry.
  // Idempotent by id: an equal spec again -> created = false, another spec -> kConflict.
  virtual StoreResult<SubmitResult> submit(const tasks::TaskSpec& spec) = 0;
  // All or nothing.
  virtual StoreResult<BatchResult> submitBatch(const std::vector<tasks::TaskSpec>& specs) = 0;
  virtual StoreResult<CancelResult> cancel(const std::string& id) = 0;
  // A failed or cancelled task back under its id (docs/WORKFLOWS.md "Retry and dead letters"):
  // its status, waiting again. kConflict when it is not failed or cancelled.
  virtual StoreResult<tasks::TaskStatus> retry(const std::string& id) = 0;

  virtual StoreResult<tasks::TaskStatus> get(const std::string& id) = 0;
  // Long poll: returns once the task is terminal, or at `timeout` with its state then.
  virtual StoreResult<tasks::TaskStatus> wait(const std::string& id,
                                              std::chrono::milliseconds timeout) = 0;
  virtual StoreResult<TaskPage> list(std::optional<tasks::State> state, size_t limit,
                                     const std::string& cursor, const TaskFilter& filter = {}) = 0;
  using NewestCursor = api::NewestCursor;
  virtual StoreResult<TaskPage> listNewest(std::optional<tasks::State> state, size_t limit,
                                           const std::optional<NewestCursor>& after,
                                           const TaskFilter& filter = {}) = 0;
  virtual StoreResult<WorkersView> workers() = 0;
  virtual StoreResult<ClusterView> cluster() = 0;
  // Makes every wait() in progress, and every later one, return at once.
  virtual void interruptWaits() = 0;

  // The session as the coordination layer reports it; ready means kConnected.
  virtual coord::SessionEvent session() const = 0;
  bool connected() const { return session().state == coord::SessionState::kConnected; }

  virtual const tasks::Layout& layout() const = 0;
  // Queue settings and draining (docs/ROUTING.md).
  virtual QueueAdmin& queues() = 0;
  // Single submits waiting for a group multi (StoreOptions::group_inflight).
  virtual size_t queuedSubmits() const = 0;
};

}  // namespace drover::api

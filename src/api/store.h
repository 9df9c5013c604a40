#pragma once

// The client side of the task protocol (docs/ZNODES.md): what the REST API does to the znode
// tree. TaskStore makes the writes (submit, batch submit, cancel), with blocking calls and
// deadlines meant for HTTP handler threads; its reads are TaskReader's (task_reader.h), its flood
// control Admission's (admission.h); the event stream is EventFeed's (event_feed.h).

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/admission.h"
#include "api/problem.h"
#include "api/queue_admin.h"
#include "api/store_options.h"
#include "api/task_reader.h"
#include "api/task_service.h"
#include "coord/coordination.h"
#include "tasks/layout.h"
#include "tasks/task.h"

namespace drover::api {

// The API's side of the protocol over one coordination session. Thread-safe: every method may
// be called from many HTTP threads at once; each blocks for at most about its deadline.
//
// Writes follow the token rule: a status is written after submit only in one multi that deletes
// the task's token (job or assignment). Ambiguous writes (connection loss, timeout) are settled
// by re-reading; no call reports success without a commit.
class TaskStore final : public TaskService {
 public:
  TaskStore(coord::Coordination& coord, tasks::Layout layout, StoreOptions options = {});

  // Creates status (pending), job (attempt 1) and one event in one multi. An existing id with an
  // equal spec is an idempotent repeat (created = false); with another spec kConflict (nothing
  // written). kUnavailable when not connected or when the outcome stays unknown past the
  // settle deadline.
  StoreResult<SubmitResult> submit(const tasks::TaskSpec& spec) override;

  // All or nothing, in one multi. kBadRequest for duplicate ids or an empty batch, kTooLarge past
  // max_multi_bytes. If any id exists: all exist with equal specs -> created = false, else
  // kConflict naming the ids (nothing written).
  StoreResult<BatchResult> submitBatch(const std::vector<tasks::TaskSpec>& specs) override;

  // Cancels per the protocol: terminal -> unchanged (already_finished); pending -> delete job +
  // set cancelled; assigned/running -> delete the assignment + set cancelled. Retries (bounded)
  // when the token moved under it.
  StoreResult<CancelResult> cancel(const std::string& id) override;

  // The reads (see TaskReader).
  StoreResult<tasks::TaskStatus> get(const std::string& id) override { return reader_.get(id); }
  StoreResult<tasks::TaskStatus> wait(const std::string& id,
                                      std::chrono::milliseconds timeout) override {
    return reader_.wait(id, timeout);
  }
  StoreResult<TaskPage> list(std::optional<tasks::State> state, size_t limit,
                             const std::string& cursor, const TaskFilter& filter = {}) override {
    return reader_.list(state, limit, cursor, filter);
  }
  StoreResult<TaskPage> listNewest(std::optional<tasks::State> state, size_t limit,
                                   const std::optional<NewestCursor>& after,
                                   const TaskFilter& filter = {}) override {
    return reader_.listNewest(state, limit, after, filter);
  }
  StoreResult<WorkersView> workers() override { return reader_.workers(); }
  StoreResult<ClusterView> cluster() override { return reader_.cluster(); }
  void interruptWaits() override { reader_.interruptWaits(); }

  // The session as the coordination layer reports it; ready means kConnected.
  coord::SessionEvent session() const override { return coord_.session(); }

  const tasks::Layout& layout() const override { return layout_; }
  // Queue settings and draining (docs/ROUTING.md).
  QueueAdmin& queues() override { return queues_; }

  // Single submits waiting for a group multi (see StoreOptions::group_inflight).
  size_t queuedSubmits() const override;

 private:
  template <class T>
  coord::Result<T> await(const coord::Future<T>& future) const {
    return awaitFor(future, options_.call_timeout);
  }
  void pause(int attempt) const;

  // Group commit (see StoreOptions::group_inflight). A submit's first try joins the queue; the
  // outcome of its group's multi is all it learns: nullopt when it committed, else the multi's
  // error (one op failed: the submit then tries alone, which tells whose op it was and why; or
  // the session failed; or the outcome is unknown).
  struct GroupEntry;
  struct Group;
  std::optional<coord::Error> groupCreate(const tasks::TaskStatus& status);

  coord::Coordination& coord_;
  const tasks::Layout layout_;
  const StoreOptions options_;
  TaskReader reader_;
  Admission admission_;
  QueueAdmin queues_;

  // Shared with multi completions, which may come after the store is gone.
  std::shared_ptr<Group> group_;
};

}  // namespace drover::api

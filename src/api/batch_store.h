#pragma once

// Protocol v2's writes for the API (docs/ZNODES.md "Protocol v2"): submit (concurrent single
// submits grouped into one batch record), batch submit (one record, all or nothing) and cancel,
// every multi built by tasks::v2::Builder. Its reads are BatchReader's (api/batch_reader.h).
// Blocking calls with deadlines, for HTTP handler threads. Thread-safe.
//
// Ambiguous writes (connection loss) are settled by re-reading: a multi whose outcome is unknown
// is sent again under the same batch name, and a NodeExists on that name is ours only when the
// record found there is the one we sent. No call reports success without a commit.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "api/admission.h"
#include "api/batch_reader.h"
#include "api/queue_admin.h"
#include "api/store_options.h"
#include "api/task_service.h"
#include "coord/coordination.h"
#include "tasks/batch.h"
#include "tasks/layout.h"

namespace drover::api {

class BatchStore final : public TaskService {
 public:
  BatchStore(coord::Coordination& coord, tasks::Layout layout, StoreOptions options = {});

  // An empty id: the task is named "{batch}.{index}". A client id of that shape is refused.
  StoreResult<SubmitResult> submit(const tasks::TaskSpec& spec) override;
  // One batch record. kTooLarge past 512 KiB (the record) or max_multi_bytes (the multi).
  StoreResult<BatchResult> submitBatch(const std::vector<tasks::TaskSpec>& specs) override;
  StoreResult<CancelResult> cancel(const std::string& id) override;
  // One multi (Builder::retry): the pending state (created when gone) gets the task waiting at
  // its last attempt + 1, a result record its re-open (an outcome `pending`). Of two at once,
  // one wins on the pending state's version and the other sees the task pending: 409.
  StoreResult<tasks::TaskStatus> retry(const std::string& id) override;

  // A task waiting for dependencies shows `waiting` and the ids it waits for (batch_depends.cc).
  StoreResult<tasks::TaskStatus> get(const std::string& id) override;
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
  coord::SessionEvent session() const override { return coord_.session(); }
  const tasks::Layout& layout() const override { return layout_; }
  QueueAdmin& queues() override { return queues_; }
  size_t queuedSubmits() const override;

  BatchReader& reader() { return reader_; }

  // The largest batch record (ZNODES.md: ≤ 512 KiB, so a submit multi stays under the packet
  // limit with its id entries).
  static constexpr size_t kMaxRecordBytes = 512 * 1024;

 private:
  struct Entry;
  // How sending one batch record ended.
  struct Sent {
    enum class Kind { kCommitted, kIdTaken, kFailed } kind = Kind::kFailed;
    std::string batch;  // committed: its name
    std::string id;     // taken: the client id whose entry exists
    Problem problem;    // failed
  };
  // Sends a record of `specs` (empty id: generated) until it commits, an id entry is taken, or
  // it cannot; creates a missing time bucket, picks a new name when the name is taken, and
  // settles ambiguous outcomes. `stamp` is the record's submit time.
  Sent send(const std::vector<tasks::TaskSpec>& specs, int64_t stamp);
  // The depends_on of `specs` (one batch, or the one task of a single submit), checked before
  // any write (api/batch_depends.cc): a 400 for a bad reference, a cycle, an unknown id or a
  // dependency that failed or was cancelled; reads the dependencies outside the batch.
  std::optional<Problem> checkDepends(const std::vector<tasks::TaskSpec>& specs, bool single);
  // The group commit: runs group multis on this thread until `entry` is decided.
  void runUntilDone(const std::shared_ptr<Entry>& entry);
  void sendGroup(std::vector<std::shared_ptr<Entry>> entries);
  // An existing client id, resolved alone: equal spec -> the task (created = false), else
  // kConflict; nullopt when the id entry is gone again (submit once more).
  StoreResult<std::optional<SubmitResult>> existing(const tasks::TaskSpec& spec);
  // The client ids of a batch (`client`: their places in `specs`) that exist, by whether their
  // spec is the same (`present`) or not (`differ`); id entries read pipelined.
  struct Existing {
    std::vector<std::string> present, differ;
  };
  StoreResult<Existing> existingIds(const std::vector<tasks::TaskSpec>& specs,
                                    const std::vector<size_t>& client);
  template <class T>
  coord::Result<T> await(const coord::Future<T>& future) const {
    return awaitFor(future, options_.call_timeout);
  }

  coord::Coordination& coord_;
  const tasks::Layout layout_;
  const StoreOptions options_;
  BatchReader reader_;
  QueueAdmin queues_;
  Admission admission_;  // max_pending_tasks, from the leader's waiting count

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Entry>> queue_;
  size_t inflight_ = 0;
  size_t last_group_ = 0;  // submits the last group carried (under mu_)
};

}  // namespace drover::api

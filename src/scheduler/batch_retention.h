#pragma once

// Protocol v2 housekeeping (docs/ZNODES.md "Protocol v2"), run by the leader's sweep:
//   - stale held pointers: a pointer whose chunk is gone, or no longer lists the task, means the
//     task finished; the pending state is rewritten without them (versioned), or deleted when
//     nothing is left in it (versioned delete), so that a finished batch has no pending state;
//   - expiry: a batch with no pending state whose submit time is older than the retention age
//     loses its result records, id entries and record in one multi (Builder::expire, after
//     listing its children; NotEmpty means a record appeared: it is looked at again next pass,
//     never half deleted); an old time bucket left empty is deleted;
//   - count (batch_retention_count.cc): once the finished batches hold more tasks than
//     retention_count, the oldest finished batches are expired the same way until they do not.
//     Task counts come from each finished batch's result record names, listed once per
//     leadership and kept per batch name; a time bucket that can get no more batches is listed
//     once.
// Pointers are judged only against what is known: a worker whose chunks are not all read, or
// whose requeue runs, is left alone.
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

#include "scheduler/chunk_requeue.h"
#include "scheduler/leader_context.h"
#include "scheduler/pending_tracker.h"
#include "scheduler/worker_tracker.h"
#include "tasks/protocol.h"

namespace drover::scheduler {

class BatchRetention {
 public:
  struct Options {
    std::chrono::milliseconds retention_age = std::chrono::hours(24);
    size_t expire_per_pass = 500;  // batches expired per pass at most
    size_t retention_count = 0;    // finished tasks kept at most (0: no count limit)
  };
  BatchRetention(const LeaderContext& ctx, Options options, PendingTracker& pending,
                 WorkerTracker& workers, ChunkRequeue& requeue, PendingTracker::Wall wall);

  // Called with each batch this retention expired.
  void onExpired(std::function<void(const std::string& batch)> fn) { on_expired_ = std::move(fn); }

  // Drops stale pointers and deletes empty pending states: fenced multis of up to
  // kSweepsPerMulti batches (a flood of single submits ends as many small batches, and a write
  // per batch was as many writes as the submits themselves).
  void sweepPointers();
  static constexpr size_t kSweepsPerMulti = 256;
  static constexpr size_t kSweepMultiBytes = 512 * 1024;
  // One expiry pass: by count first (when retention_count is set and the finished tasks pass
  // it), else over the time buckets older than the retention age.
  void expire();

  uint64_t pointersDropped() const { return pointers_dropped_; }
  uint64_t pendingDeleted() const { return pending_deleted_; }
  uint64_t batchesExpired() const { return batches_expired_; }
  // The tasks of finished batches as the last count pass found them.
  uint64_t retainedTasks() const { return retained_tasks_; }

 private:
  enum class Pointer { kLive, kStale, kUnknown };
  Pointer judge(const std::string& worker, const std::string& chunk, const tasks::TaskRef& ref);
  void expireByAge();
  void expireByCount();
  void countBucket(const std::string& bucket, std::shared_ptr<size_t> left);
  void sizeNext();
  void sizeBatch(const std::string& bucket, const std::string& batch);
  void countDone();
  void expireBucket(const std::string& bucket);
  void expireBatch(const std::string& batch, std::shared_ptr<size_t> left,
                   const std::string& bucket);
  void bucketDone(const std::string& bucket);
  // Sends writes[from..] in multis; a multi that fails on one batch's op goes again without it.
  void sendSweeps(std::shared_ptr<std::vector<tasks::v2::PendingWrite>> writes, size_t from);

  const LeaderContext& ctx_;
  const Options options_;
  PendingTracker& pending_;
  WorkerTracker& workers_;
  ChunkRequeue& requeue_;
  const PendingTracker::Wall wall_;
  std::function<void(const std::string&)> on_expired_;
  std::set<std::string> probing_;  // workers whose folder is being looked up
  bool expiring_ = false;
  size_t budget_ = 0;        // batches this pass may still expire
  size_t buckets_left_ = 0;  // buckets of this pass still being worked on
  uint64_t pointers_dropped_ = 0;
  uint64_t pending_deleted_ = 0;
  uint64_t batches_expired_ = 0;
  // Count retention: per time bucket, its finished batches' task counts, and
  // whether the bucket's listing is final (its time is long past: no new batches land there).
  struct Bucket {
    std::map<std::string, int64_t> sizes;
    bool sealed = false;
  };
  std::map<std::string, Bucket> counted_;
  std::vector<std::pair<std::string, std::string>> to_size_;  // (bucket, batch) this pass
  size_t sizing_ = 0;                                         // listings in flight
  uint64_t retained_tasks_ = 0;
};

}  // namespace drover::scheduler

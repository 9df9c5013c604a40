#pragma once

// Protocol v2 housekeeping (docs/ZNODES.md "Protocol v2"), run by the leader's sweep:
//   - stale held pointers: a pointer whose chunk is gone, or no longer lists the task, means the
//     task finished; the pending state is rewritten without them (versioned), or deleted when
//     nothing is left in it (versioned delete), so that a finished batch has no pending state;
//   - expiry: a batch with no pending state whose submit time is older than the retention age
//     loses its result records, id entries and record in one multi (Builder::expire, after
//     listing its children; NotEmpty means a record appeared: it is looked at again next pass,
//     never half deleted); an old time bucket left empty is deleted.
// Pointers are judged only against what is known: a worker whose chunks are not all read, or
// whose requeue runs, is left alone.
//
// Threads: driven by its scheduler on the scheduler's executor (LeaderContext); not thread-safe.

#include <chrono>
#include <cstdint>
#include <functional>
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
  };
  BatchRetention(const LeaderContext& ctx, Options options, PendingTracker& pending,
                 WorkerTracker& workers, ChunkRequeue& requeue, PendingTracker::Wall wall);

  // Drops stale pointers and deletes empty pending states (one fenced multi per batch).
  void sweepPointers();
  // One expiry pass over the time buckets older than the retention age.
  void expire();

  uint64_t pointersDropped() const { return pointers_dropped_; }
  uint64_t pendingDeleted() const { return pending_deleted_; }
  uint64_t batchesExpired() const { return batches_expired_; }

 private:
  enum class Pointer { kLive, kStale, kUnknown };
  Pointer judge(const std::string& worker, const std::string& chunk, const tasks::TaskRef& ref);
  void expireBucket(const std::string& bucket);
  void expireBatch(const std::string& batch, std::shared_ptr<size_t> left,
                   const std::string& bucket);
  void bucketDone(const std::string& bucket);

  const LeaderContext& ctx_;
  const Options options_;
  PendingTracker& pending_;
  WorkerTracker& workers_;
  ChunkRequeue& requeue_;
  const PendingTracker::Wall wall_;
  std::set<std::string> probing_;  // workers whose folder is being looked up
  bool expiring_ = false;
  size_t budget_ = 0;        // batches this pass may still expire
  size_t buckets_left_ = 0;  // buckets of this pass still being worked on
  uint64_t pointers_dropped_ = 0;
  uint64_t pending_deleted_ = 0;
  uint64_t batches_expired_ = 0;
};

}  // namespace drover::scheduler

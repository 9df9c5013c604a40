#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace drover::tasks {

// The znode tree (contract, see docs/ZNODES.md), below a root such as "/drover".
//
// Ownership rule: while a task is not terminal exactly one "token" node exists for it, either
// its job (/jobs/{bucket}/{id}) or its assignment (/assignments/{worker}/{id}). Every change of
// /status/{id} after submit is made in one multi with deleting (consuming) or checking that
// token, so two writers can never both record an outcome.
class Layout {
 public:
  static constexpr int kJobBuckets = 256;
  // A batch name is 11 hex digits of its submit time in ms then 5 random ones; its first 7 digits
  // (the time / 65,536 ms) name its time bucket.
  static constexpr size_t kBatchBucketDigits = 7;

  explicit Layout(std::string root = "/drover");

  const std::string& root() const { return root_; }
  std::string workers() const { return root_ + "/workers"; }
  std::string worker(std::string_view id) const;
  std::string election() const { return root_ + "/election"; }
  std::string epoch() const { return root_ + "/epoch"; }
  std::string leader() const { return root_ + "/leader"; }
  std::string jobs() const { return root_ + "/jobs"; }
  // The bucket a task's job lives in: /jobs/{2 hex digits of a hash of the id}.
  std::string jobBucket(std::string_view task_id) const;
  std::string jobBucketAt(int index) const;
  std::string job(std::string_view task_id) const;
  std::string assignments() const { return root_ + "/assignments"; }
  std::string assignmentsOf(std::string_view worker_id) const;
  std::string assignment(std::string_view worker_id, std::string_view task_id) const;
  std::string statuses() const { return root_ + "/status"; }
  // /status/{bucket}/{id}: the same 256-way split as the jobs, so that no directory holds more
  // than a few thousand statuses even with a million retained (docs/ZNODES.md).
  std::string statusBucketAt(int index) const;
  std::string status(std::string_view task_id) const;
  std::string events() const { return root_ + "/events"; }
  // /queues/{name}: a queue's settings (paused, max_running), written through the API.
  std::string queues() const { return root_ + "/queues"; }
  std::string queue(std::string_view name) const;
  // /draining/{worker}: the worker takes nothing new, finishes what it runs, then leaves.
  std::string draining() const { return root_ + "/draining"; }
  std::string drain(std::string_view worker_id) const;

  // --- Protocol v2, batch records (docs/ZNODES.md "Protocol v2"); not yet what the nodes run ---
  // /protocol holds the protocol version of the tree ("2"); a tree without it but with /jobs or
  // /status was written by the first protocol and is refused.
  std::string protocol() const { return root_ + "/protocol"; }
  std::string batches() const { return root_ + "/batches"; }
  // A time bucket: the first kBatchBucketDigits of a batch name (submit ms / 65,536: ~65 s).
  std::string batchBucket(std::string_view bucket) const;
  // /batches/{bucket}/{batch}: the immutable batch record; its children are the result records.
  std::string batch(std::string_view batch_name) const;
  std::string pendingRoot() const { return root_ + "/pending"; }
  std::string pendingBucket(std::string_view bucket) const;
  // /pending/{bucket}/{batch}: the batch's waiting tasks and where its held ones went.
  std::string pending(std::string_view batch_name) const;
  // /assignments/{worker}/{chunk}: one chunk of tasks held by a worker.
  std::string chunk(std::string_view worker_id, std::string_view chunk_name) const;
  std::string idsRoot() const { return root_ + "/ids"; }
  std::string idsBucketAt(int index) const;
  // /ids/{hash bucket}/{id}: a client-chosen id's batch and index.
  std::string idEntry(std::string_view task_id) const;
  // The persistent directories of a v2 tree (the time buckets are created as batches arrive).
  std::vector<std::string> directoriesV2() const;

  // Every persistent directory the cluster needs (root, workers, election, jobs and its buckets,
  // assignments, status and its buckets, events). Create them once with coord::ensurePath.
  std::vector<std::string> directories() const;

  static int bucketIndex(std::string_view task_id);

 private:
  std::string root_;
};

}  // namespace drover::tasks

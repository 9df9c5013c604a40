#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace drover::tasks {

// The znode tree (contract, see docs/ZNODES.md), below a root such as "/drover": every path any
// part of the cluster uses is built here.
class Layout {
 public:
  // Client-chosen ids are spread over this many /ids buckets by a hash of the id (bucketIndex).
  static constexpr int kIdBuckets = 256;
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
  std::string assignments() const { return root_ + "/assignments"; }
  std::string assignmentsOf(std::string_view worker_id) const;
  std::string events() const { return root_ + "/events"; }
  // /queues/{name}: a queue's settings (paused, max_running), written through the API.
  std::string queues() const { return root_ + "/queues"; }
  std::string queue(std::string_view name) const;
  // /draining/{worker}: the worker takes nothing new, finishes what it runs, then leaves.
  std::string draining() const { return root_ + "/draining"; }
  std::string drain(std::string_view worker_id) const;

  // --- Batch records (docs/ZNODES.md "Protocol v2") ---
  // /protocol holds the protocol version of the tree ("2"); a tree without it but with /jobs or
  // /status was written by the first protocol and is refused (app/tree.cc): those two paths are
  // kept for that check only.
  std::string protocol() const { return root_ + "/protocol"; }
  std::string jobs() const { return root_ + "/jobs"; }
  std::string statuses() const { return root_ + "/status"; }
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
  // Every persistent directory the cluster needs (the time buckets are created as batches
  // arrive). Create them once with coord::ensurePath.
  std::vector<std::string> directories() const;

  static int bucketIndex(std::string_view task_id);

 private:
  std::string root_;
};

}  // namespace drover::tasks

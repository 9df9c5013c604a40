#pragma once

// Protocol v2's transitions, in one home (docs/ZNODES.md "Protocol v2", "The token rule, per
// batch"). While a task is not terminal exactly one record holds its token: the pending state of
// its batch (it waits) or one chunk (a worker holds it). Every transition is one multi that
// writes each holder it takes tokens from at the version it read, and writes where the tokens go
// (another holder, or a result record). A `Builder` strings one or more transitions into one
// multi, appends the event record, and keeps a `Decoder` that turns a failed op index back into
// which record failed. Nobody outside this module knows op orders.
//
// What every node runs (api::BatchStore, scheduler::BatchScheduler, worker::ChunkAgent); the
// first protocol (a znode per task) was removed.
//
// Thread safety: plain values.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coord/coordination.h"
#include "coord/error.h"
#include "tasks/batch.h"
#include "tasks/layout.h"

namespace drover::tasks::v2 {

// Which record an op writes, and what its failure means.
enum class Part : uint8_t {
  kEpoch,     // check(/epoch): another node leads; step down
  kBatch,     // the batch record's create: NodeExists = the name is taken (pick another);
              // NoNode = its time bucket is missing (create it, retry)
  kPending,   // a pending state at the version read: someone else took or changed its tokens
              // (re-read that batch, decide again)
  kChunk,     // a chunk at the version read: the leader moved or reclaimed it, or a cancel took a
              // task from it (re-read the chunk); NodeExists on create = a reused chunk name
  kResult,    // a result record's create: NoNode = the batch record is gone (retention)
  kId,        // an id entry's create: NodeExists = the id is taken (idempotent submit decides)
  kEvent,     // the event record
  kRetained,  // retention's deletes: the batch changed since it was read
  kWaiting,   // the waiting count in /pending's data (leader): NoNode = no /pending yet
};
std::string_view partName(Part part);

struct Role {
  Part part = Part::kEvent;
  std::string key;  // the batch name, the chunk's path, or the id
};

class Decoder {
 public:
  // nullopt when the failure is not one op's (connection loss, session expiry, timeout).
  std::optional<Role> failed(const coord::Error& error) const;
  // In the results of a multi that succeeded: the result of the op that wrote (part, key), say
  // a chunk's new version after a commit set it; nullptr when no op did.
  const coord::OpResult* result(const std::vector<coord::OpResult>& results, Part part,
                                std::string_view key) const;

 private:
  friend class Builder;
  std::vector<Role> roles_;
};

struct Multi {
  std::vector<coord::Op> ops;
  Decoder decoder;
};

// A pending state to write: the version it was read at, and what it becomes.
struct PendingWrite {
  std::string batch;
  int32_t version = 0;
  PendingState after;
  bool create = false;  // the batch has no pending state: create it (NodeExists: someone did)
};

// A chunk to write: its version as read, and what is left in it (empty: it is deleted).
struct ChunkWrite {
  std::string worker;
  std::string name;
  int32_t version = 0;
  Chunk remaining;
};

class Builder {
 public:
  explicit Builder(const Layout& layout);
  // A leader's multi: its first op checks /epoch at `epoch`.
  static Builder fenced(const Layout& layout, int32_t epoch);

  size_t ops() const { return ops_.size(); }
  size_t bytes() const { return bytes_; }

  // --- The transitions ---

  // Submit (API): create the batch record, its pending state (every task waiting, attempt 1, not
  // before `not_before` nor its spec's run_at) and an id entry for each client-chosen id.
  void submit(const BatchRecord& batch, int64_t not_before = 0);

  // Assign (leader, fenced): write the pending states the tasks were taken from (their held
  // pointers name the new chunks) and create one chunk per worker.
  void assign(const std::vector<PendingWrite>& taken, const std::string& worker,
              const std::string& chunk_name, const Chunk& chunk, int64_t now);
  void takeFrom(const PendingWrite& write);  // one pending state, for several assign() chunks

  // Commit (worker): write its chunk without the finished tasks, record their outcomes (one
  // result record per batch), and put retried tasks back into their batch's pending state.
  // `retried` are the chunk's items that `retries` put back.
  void commit(const ChunkWrite& chunk, const std::map<std::string, ResultRecord>& outcomes,
              const std::vector<PendingWrite>& retries, const std::vector<ChunkItem>& retried,
              int64_t now);

  // Requeue (leader, fenced; the worker is gone): delete its chunk, put its tasks back in their
  // pending states (`back`; `moved` are those items), and record the outcome of those out of
  // attempts (`failed`).
  void requeue(const ChunkWrite& chunk, const std::vector<PendingWrite>& back,
               const std::vector<ChunkItem>& moved,
               const std::map<std::string, ResultRecord>& failed, int64_t now);

  // Reclaim (leader, fenced; fair assignment): write a chunk without its unstarted tasks `taken`
  // and put them back in their pending states.
  void reclaim(const ChunkWrite& chunk, const std::vector<ChunkItem>& taken,
               const std::vector<PendingWrite>& back, int64_t now);

  // Cancel (API): take the task from its holder (its pending state, or the chunk that holds it
  // and the pending state that points there) and record it `cancelled`.
  void cancel(const ChunkItem& task, const PendingWrite& pending,
              const std::optional<ChunkWrite>& holder, const Outcome& cancelled);

  // Retry (API): put a failed or cancelled task back under its id. `pending` (set at the
  // version read, or created when the batch had none left) has the task waiting at its next
  // attempt; a result record gets `reopened` (state pending) so that it is the task's latest
  // outcome. Fails on kPending when another writer changed or created the pending state (a
  // concurrent retry: read again), on kResult (NoNode) when retention took the batch.
  void retry(const PendingWrite& pending, const Outcome& reopened, const std::string& id,
             int64_t now);
  // Cancel waiting tasks (leader, fenced; a dependency of theirs failed or was cancelled): write
  // their batch's pending state without them (`pending.after`, at the version read) and record
  // their `cancelled` outcomes (each with its reason in `error`), all of one batch.
  void cancelWaiting(const PendingWrite& pending, const ResultRecord& cancelled, int64_t now);

  // Retention (leader): delete a finished batch: its result records, its pending state if left
  // (at `pending_version`), its id entries and its record.
  void expire(const std::string& batch, const std::vector<std::string>& result_children,
              std::optional<int32_t> pending_version, const std::vector<std::string>& client_ids);

  // Sweep (leader, fenced): rewrite a pending state without its stale held pointers, or delete
  // it (versioned) when nothing is left in it. No event: no task changes state.
  void sweep(const PendingWrite& write);
  // Retention (leader): delete an empty time bucket, /batches/{bucket} or /pending/{bucket}
  // (fails NotEmpty when a record appeared; nothing else is written).
  void dropBucket(const std::string& bucket, bool pending);

  // Waiting count (leader, fenced): set /pending's own data to `count`, for the API's
  // max_pending_tasks. Any version: the (fenced) leader is its only writer. No event.
  void publishWaiting(const WaitingCount& count);

  // Whether a terminal outcome this multi records is of a task with a callback_url, as the
  // caller knows from the specs (`any`; calls add up). It names the event record: "n-" when no
  // terminal event in it can need a webhook delivery (none is terminal, or every caller said
  // false), else "e-". Without a call, a multi with a terminal event is taken to have one.
  void callbacks(bool any);

  // The multi: the ops in order, then one event record (none if nothing reports an event).
  Multi finish() &&;

 private:
  void push(coord::Op op, Part part, std::string key);
  void writePending(const PendingWrite& write);
  void writeChunk(const ChunkWrite& write);
  void recordOutcomes(const std::string& batch, const ResultRecord& record, int64_t now);
  void reportPending(const std::vector<ChunkItem>& items, const std::vector<PendingWrite>& back,
                     int64_t now);
  void report(EventGroup group);

  const Layout* layout_;
  std::vector<coord::Op> ops_;
  Decoder decoder_;
  std::vector<EventGroup> events_;
  std::optional<bool> callbacks_;
  size_t bytes_ = 0;
};

// The event record op (JSON array of EventGroup) appended to the log by finish(): a persistent
// sequential "e-" child of layout.events(), or "n-" when `may_call_back` is false.
coord::CreateOp eventGroupsOp(const Layout& layout, const std::vector<EventGroup>& groups,
                              bool may_call_back = true);
// Whether an event record (by its name) may hold a terminal event of a task with a
// callback_url: false only for "n-" records. The webhook dispatcher reads only these.
bool mayHoldCallbacks(std::string_view record_name);

}  // namespace drover::tasks::v2

#pragma once

// Protocol v2's records (docs/ZNODES.md "Protocol v2"): tasks travel through ZooKeeper in
// batches and chunks, never one znode per task. This file is the records and their codecs;
// src/tasks/protocol.h builds the multis that move tokens between them.
//
//   batch record   /batches/{bucket}/{batch}        the specs, written once
//   pending state  /pending/{bucket}/{batch}        which tasks of the batch wait, and where
//                                                   the held ones went (versioned: the token
//                                                   of every waiting task)
//   chunk          /assignments/{worker}/{chunk}    tasks one worker holds (versioned: the token
//                                                   of every task in it)
//   result record  /batches/{bucket}/{batch}/r-...  outcomes of some of the batch's tasks
//   id entry       /ids/{hash}/{id}                 a client-chosen id's (batch, index)
//
// Thread safety: plain values.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tasks/records.h"
#include "tasks/task.h"

namespace drover::tasks {

// --- Names ---

// A batch name: 11 hex digits of the submit time in ms, then 5 random hex digits (sorting names
// sorts batches by submit time; the first Layout::kBatchBucketDigits name the time bucket).
std::string makeBatchName(int64_t submitted_ms, uint32_t random);
bool isBatchName(std::string_view name);
int64_t batchTime(std::string_view batch_name);  // ms, from the name

// A task in a batch. Server-generated task ids are "{batch}.{index}" and need no index to find.
struct TaskRef {
  std::string batch;
  uint32_t index = 0;
  bool operator==(const TaskRef&) const = default;
  auto operator<=>(const TaskRef&) const = default;
};
std::string generatedId(const TaskRef& ref);
// The ref of a server-generated id; nullopt for any other id (a client-chosen one).
std::optional<TaskRef> parseGeneratedId(std::string_view id);

// A chunk name, chosen by the leader so that the pending state can point at it in the same
// multi that creates it: "c-{epoch:010}-{n:010}" (epochs are unique per leadership, n counts
// up within one; sorting names sorts chunks in assignment order).
std::string makeChunkName(int32_t epoch, int64_t n);

// --- Records ---

// The immutable record of one batch. tasks[i].id is the task's id; for a generated id it is not
// stored (it follows from the name).
struct BatchRecord {
  std::string name;
  int64_t submitted_at = 0;  // wall-clock ms
  std::vector<TaskSpec> tasks;
};
std::string encode(const BatchRecord& batch);
std::optional<BatchRecord> decodeBatch(std::string_view name, std::string_view data);

// A task of a batch that waits to be assigned.
struct Waiting {
  int attempt = 1;         // the attempt it will run as
  int64_t not_before = 0;  // wall-clock ms before which it must not be assigned
  std::string error;       // the previous attempt's error ("" if none)
  bool operator==(const Waiting&) const = default;
};

// Where a held task went (a pointer, not a token: the chunk is the token while it lists the task).
struct Held {
  std::string worker;
  std::string chunk;
  bool operator==(const Held&) const = default;
};

// The mutable state of one batch: every task not known to be terminal, by index. A task neither
// waiting nor held is terminal (its outcome is in a result record).
//
// Waiting tasks are kept as runs of consecutive indices with one Waiting value, as they are
// encoded: a fresh 1,000-task batch is one run, not a thousand map nodes, which is what a
// leader holding a large backlog pays per batch (docs/PERFORMANCE.md "Leader memory").
class PendingState {
  struct Run {
    uint32_t last = 0;  // the run is [its key, last]
    Waiting w;
    bool operator==(const Run&) const = default;
  };
  using Runs = std::map<uint32_t, Run>;

 public:
  // The waiting tasks as (index, Waiting) pairs in index order; for range-for, as a map would.
  class WaitingView {
   public:
    class iterator {
     public:
      using value_type = std::pair<uint32_t, const Waiting&>;
      iterator(Runs::const_iterator run, Runs::const_iterator end)
          : run_(run), end_(end), index_(run == end ? 0 : run->first) {}
      value_type operator*() const { return {index_, run_->second.w}; }
      iterator& operator++();
      bool operator==(const iterator& o) const { return run_ == o.run_ && index_ == o.index_; }

     private:
      Runs::const_iterator run_;
      Runs::const_iterator end_;
      uint32_t index_;
    };
    WaitingView(const Runs& runs, size_t count) : runs_(runs), count_(count) {}
    iterator begin() const { return {runs_.begin(), runs_.end()}; }
    iterator end() const { return {runs_.end(), runs_.end()}; }
    size_t size() const { return count_; }
    bool empty() const { return count_ == 0; }

   private:
    const Runs& runs_;
    size_t count_;
  };

  void wait(uint32_t index, Waiting w);
  void hold(uint32_t index, Held h);  // the task leaves `waiting`
  void erase(uint32_t index);         // the task is terminal

  WaitingView waiting() const { return {waiting_, waiting_count_}; }
  const std::map<uint32_t, Held>& held() const { return held_; }
  const Waiting* waitingAt(uint32_t index) const;
  const Held* heldAt(uint32_t index) const;
  // Calls f(first, last, waiting) for each run of consecutive waiting indices with one value.
  template <typename F>
  void forWaitingRuns(F&& f) const {
    for (const auto& [first, run] : waiting_) f(first, run.last, run.w);
  }
  // Held pointers to `chunk` are dropped (the leader's sweep, once that chunk is gone).
  void forgetChunk(std::string_view worker, std::string_view chunk);
  bool empty() const { return waiting_.empty() && held_.empty(); }

  bool operator==(const PendingState&) const = default;

 private:
  void stopWaiting(uint32_t index);  // splits the run holding `index`, if any

  Runs waiting_;  // first index -> run; adjacent runs never have equal values
  size_t waiting_count_ = 0;
  std::map<uint32_t, Held> held_;
};
// Compact: runs of indices with default Waiting values, and runs held by one chunk, are ranges,
// so a fresh 1,000-task batch is a few bytes.
std::string encode(const PendingState& state);
std::optional<PendingState> decodePending(std::string_view data);

// One task in a chunk. The spec is inline when small; else the worker reads the batch record.
struct ChunkItem {
  TaskRef ref;
  std::string id;  // the task's id (stored only when client-chosen)
  int attempt = 1;
  int64_t submitted_at = 0;
  std::string error;  // the previous attempt's error
  std::optional<TaskSpec> spec;
  bool operator==(const ChunkItem&) const = default;
};

struct Chunk {
  std::vector<ChunkItem> items;
  const ChunkItem* find(const TaskRef& ref) const;
  // The chunk without `refs` (what a commit, a reclaim or a cancel leaves).
  Chunk without(const std::vector<TaskRef>& refs) const;
  bool operator==(const Chunk&) const = default;
};
// Specs up to this size travel inline in a chunk.
inline constexpr size_t kInlineSpecBytes = 2048;
// A chunk holds at most this many tasks and this many bytes (the leader cuts there).
inline constexpr size_t kMaxChunkTasks = 256;
inline constexpr size_t kMaxChunkBytes = 64 * 1024;
std::string encode(const Chunk& chunk);
std::optional<Chunk> decodeChunk(std::string_view data);

// The outcome of one task's attempt, in a result record. A task's outcomes across its batch's
// records (in sequence order) are its history; the latest decides (docs/ZNODES.md "Retry and
// history on batch records").
struct Outcome {
  uint32_t index = 0;
  std::string id;                   // the task's id (stored only when client-chosen)
  State state = State::kSucceeded;  // terminal, or pending: the task waits again (retried or
                                    // re-opened), its pending state tells where
  int attempt = 0;
  std::string worker;
  int64_t started_at = 0;
  int64_t finished_at = 0;
  std::string error;
  Json result;
  bool operator==(const Outcome&) const = default;
};

// The outcomes one multi recorded for one batch. Immutable; a child of the batch record named
// "r-{lo}-{hi}-{seq}" (lo and hi bound its indices, so a reader opens only the records whose range
// holds the index it looks for).
struct ResultRecord {
  std::vector<Outcome> outcomes;
  const Outcome* find(uint32_t index) const;
};
// Results larger than this are replaced by a note (one task must not fail a commit).
inline constexpr size_t kMaxResultBytes = 64 * 1024;
std::string encode(const ResultRecord& record);
std::optional<ResultRecord> decodeResults(std::string_view data);
// The name prefix of a result record (the sequence number follows), and its bounds parsed back.
std::string resultPrefix(const ResultRecord& record);
std::optional<std::pair<uint32_t, uint32_t>> resultRange(std::string_view child_name);
// A result record's sequence number (ZooKeeper's, per batch: the order records were written);
// nullopt for a child that is not a result record.
std::optional<uint64_t> resultSeq(std::string_view child_name);
// The result records among `children`, oldest first (by sequence number).
std::vector<std::string> resultsInOrder(std::vector<std::string> children);

// One line of the event log (/events): tasks of one batch that reached one state in one multi.
// The feed spells ids out: generated ids from (batch, index), client-chosen ones from `ids`.
struct EventGroup {
  std::string batch;
  std::vector<uint32_t> indices;
  std::map<uint32_t, std::string> ids;  // client-chosen ids of some of `indices`
  State state = State::kPending;
  int attempt = 0;
  std::string worker;
  int64_t at = 0;
  std::vector<TaskEvent> expand() const;  // one TaskEvent per task
  bool operator==(const EventGroup&) const = default;
};
Json toJson(const EventGroup& group);
std::optional<EventGroup> eventGroupFromJson(const Json& j);

// A client-chosen id's place.
std::string encode(const TaskRef& ref);
std::optional<TaskRef> decodeRef(std::string_view data);

// The data of /pending itself: how many tasks wait (not held by a worker, delayed ones
// included), as the leader last counted them, and when (wall ms). The API's max_pending_tasks
// reads it; /v1/cluster takes its waiting, delayed and held counts from it once the backlog is
// too large to count by reading every pending state (docs/ZNODES.md "Protocol v2").
struct WaitingCount {
  uint64_t waiting = 0;
  int64_t at = 0;
  uint64_t delayed = 0;  // of `waiting`: first runs whose run_at lies ahead, and dependents
                         // not released yet (what GET shows `waiting`)
  uint64_t held = 0;     // tasks in workers' chunks (assigned or running)
  uint64_t blocked = 0;  // of `delayed`: dependents not released yet
  bool operator==(const WaitingCount&) const = default;
};
std::string encode(const WaitingCount& count);
// nullopt for anything else (an empty /pending: no leader has counted yet).
std::optional<WaitingCount> decodeWaiting(std::string_view data);

}  // namespace drover::tasks

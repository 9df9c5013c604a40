#pragma once

// Protocol v2 (docs/ZNODES.md "Protocol v2"): the leader's view of /pending. It follows the time
// buckets and every batch's pending state with watches, reads each batch record once (records
// are immutable, so the copy is kept while the batch has a pending state), and keeps the JobIndex
// holding exactly the waiting tasks that are not in one of the leader's multis. A task whose
// not_before lies ahead is indexed as delayed and made ready by a timer on the executor's clock.
//
// A cache of the tree: every write made from it is versioned, so a stale view only makes a write
// fail (the writer re-reads the batch: reread()).
//
// Threads: driven by its scheduler on the scheduler's executor (LeaderContext); not thread-safe.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "scheduler/job_index.h"
#include "scheduler/leader_context.h"
#include "scheduler/packed_record.h"
#include "tasks/batch.h"

namespace drover::scheduler {

class PendingTracker {
 public:
  struct Options {
    // While this many tasks or more are ready, a bucket whose child watch fired is re-listed
    // only after `relist_delay` (new batches cannot be assigned sooner anyway).
    size_t relist_ready_below = 256;
    base::Duration relist_delay = std::chrono::milliseconds(500);
    // At most this many pending states carry a data watch. The rest are read without one and
    // watched, oldest batch first, as watches free up (a watched batch ends or its watch fires
    // and is re-armed on the next read). Their changes by other writers are not missed: a
    // write of ours on a changed state fails on its version and we read it again, and the
    // watch they get once a slot frees starts with a fresh read. Why a bound: the 3.8.0 C
    // client handles a session event in time quadratic in the watches it holds, and with one
    // watch per batch a backlog of 75,000 single-task batches kept its I/O thread busy for
    // minutes after a reconnect (docs/FAULTS.md).
    size_t max_watched = 2048;
  };
  struct Batch {
    std::string name;
    int32_t version = -1;  // of the pending state; -1 until read
    int64_t czxid = 0;     // FIFO order of batches within a priority
    tasks::PendingState state;
    std::shared_ptr<const PackedRecord> record;
    bool watched = false;  // a data watch on the pending state is armed
    int busy = 0;          // multis of ours in flight that write it
    bool stale = false;    // changed while busy: re-read once they are back
  };
  using Wall = std::function<int64_t()>;

  PendingTracker(const LeaderContext& ctx, Options options, JobIndex& index, Wall wall,
                 std::function<void()> changed);

  // Lists /pending and every bucket (again, after a reconnect or for reconciliation).
  void follow();
  // True while no listing or read is out (after follow()). Under a steady flood of new batches
  // that may never hold: retention's expiry by count waits for it (it must not judge a batch
  // finished whose pending state is being read), nothing else does.
  bool loaded() const { return loading_ == 0 && followed_; }
  // True once the first scan is in: the buckets of the first listing of /pending each listed
  // once, and the batches those listings named each read (pending state and record). Stays
  // true. What the waiting count, the sweep and the first assignment in priority order wait for.
  bool scanned() const { return scanned_ || loaded(); }

  Batch* find(const std::string& batch);
  const std::map<std::string, Batch>& batches() const { return batches_; }
  // A tracked batch's record, when it has been read.
  const PackedRecord* record(const std::string& batch) const;
  // Batch records held (tracked batches whose record has been read).
  size_t recordsHeld() const { return records_held_; }

  // A multi of ours that writes `batch` is sent / came back. While one is out, watch-triggered
  // re-reads wait for it.
  void begin(const std::string& batch);
  void end(const std::string& batch);
  // Our multi set the pending state to `after` at version + 1 (or deleted it when `deleted`).
  void wrote(const std::string& batch, int32_t version, const tasks::PendingState& after,
             bool deleted = false);
  // Pending states with a data watch armed, and those read without one (the cap was reached).
  size_t watchedCount() const { return watched_; }
  size_t unwatchedCount() const { return unwatched_.size(); }
  // Reads the pending state again (a write on it failed with BadVersion, or a watch fired).
  void reread(const std::string& batch);
  // Entries taken from the index by a multi that then failed: back in, if still waiting.
  void restore(const std::vector<JobIndex::Entry>& entries);
  // The JobIndex entry for a waiting task of a loaded batch.
  std::optional<JobIndex::Entry> entryFor(const Batch& batch, uint32_t index) const;

  // Calls `done` with a batch's record (nullptr: gone or unreadable): the tracked batch's copy,
  // else one read shared by the callers waiting for it. Only tracked batches keep their record
  // (a finished batch's, read by retention before it deletes the batch, is not kept: caching
  // those grew the leader by every expired batch's record). For requeue and retention.
  using RecordDone = std::function<void(std::shared_ptr<const PackedRecord>)>;
  void withRecord(const std::string& batch, RecordDone done);

  // Makes delayed tasks whose time came ready; re-arms the timer.
  void promote();

  // Dependencies (scheduler/dependency_tracker.h): `hold` keeps a waiting task out of the
  // JobIndex (true: held); `left` hears of a task that no longer waits (or whose batch went).
  using Hold = std::function<bool(const Batch&, uint32_t index)>;
  using Left = std::function<void(const tasks::TaskRef&)>;
  void setDependencyHooks(Hold hold, Left left);
  // A task held out may be assigned now: it joins the JobIndex if it still waits.
  void release(const tasks::TaskRef& ref);

 private:
  void listRoot();
  void listBucket(const std::string& bucket);
  void bucketChanged(const std::string& bucket);
  void read(const std::string& batch);
  void onRead(const std::string& batch, const coord::Result<coord::Node>& r);
  void readRecord(const std::string& batch);
  // Brings the index in line with `next` (the batch's new state): drops tasks no longer
  // waiting, adds new or changed ones.
  void apply(Batch& b, const tasks::PendingState& next);
  void forget(const std::string& batch);
  void setWatched(Batch& b, bool watched);
  void watchMore();  // re-reads unwatched batches, with a watch, while the cap allows
  void armDelay();
  void settle();  // one listing or read came back

  const LeaderContext& ctx_;
  const Options options_;
  JobIndex& index_;
  const Wall wall_;
  const std::function<void()> changed_;
  Hold hold_;
  Left left_;

  std::map<std::string, Batch> batches_;
  std::map<std::string, std::set<std::string>> buckets_;  // bucket -> batches listed
  std::set<std::string> bucket_watches_;
  bool root_watch_ = false;
  size_t watched_ = 0;               // batches with watched == true
  std::set<std::string> unwatched_;  // read without a watch (the cap), oldest name first
  bool followed_ = false;
  size_t loading_ = 0;
  // The first scan (scanned()): its buckets not yet listed, and the batches their first
  // listings named with the reads of each not yet in (2: the pending state and the record).
  void scanRead(const std::string& batch);
  void checkScan();
  bool scan_listed_ = false;
  std::set<std::string> scan_buckets_;
  std::map<std::string, int> scan_reads_;
  bool scanned_ = false;
  std::set<std::string> dirty_buckets_;
  bool relist_timer_ = false;
  int64_t delay_due_ = 0;  // when the armed delay timer fires (wall ms); 0: none armed
  std::map<std::string, std::vector<RecordDone>> record_waiters_;
  size_t records_held_ = 0;
};

}  // namespace drover::scheduler

#include "scheduler/pending_tracker.h"

#include <spdlog/spdlog.h>

#include <utility>

namespace drover::scheduler {

using coord::Code;
using coord::Node;
using coord::Result;

namespace {

std::string bucketOf(const std::string& batch) {
  return batch.substr(0, tasks::Layout::kBatchBucketDigits);
}

}  // namespace

PendingTracker::PendingTracker(const LeaderContext& ctx, Options options, JobIndex& index,
                               Wall wall, std::function<void()> changed)
    : ctx_(ctx),
      options_(options),
      index_(index),
      wall_(std::move(wall)),
      changed_(std::move(changed)) {}

void PendingTracker::follow() {
  followed_ = true;
  listRoot();
}

PendingTracker::Batch* PendingTracker::find(const std::string& batch) {
  auto it = batches_.find(batch);
  return it == batches_.end() ? nullptr : &it->second;
}

const PackedRecord* PendingTracker::record(const std::string& batch) const {
  auto it = batches_.find(batch);
  return it == batches_.end() ? nullptr : it->second.record.get();
}

void PendingTracker::settle() {
  if (loading_ > 0 && --loading_ == 0) changed_();
}

void PendingTracker::listRoot() {
  coord::Watcher watcher;
  if (!root_watch_) {
    root_watch_ = true;
    watcher = [this, post = ctx_.post](const coord::WatchEvent&) {
      post([this] {
        root_watch_ = false;
        if (ctx_.active()) listRoot();
      });
    };
  }
  ++loading_;
  ctx_.coord.children(ctx_.layout.pendingRoot(), std::move(watcher))
      .then([this, post = ctx_.post](const Result<std::vector<std::string>>& r) {
        post([this, r] {
          if (!ctx_.active()) return;
          if (!r) {
            root_watch_ = false;
            ctx_.on_read_error(r.error(), [this] { listRoot(); });
          } else {
            if (!scan_listed_) {
              scan_listed_ = true;
              scan_buckets_.insert(r->begin(), r->end());
            }
            for (const auto& bucket : *r) listBucket(bucket);
          }
          checkScan();
          settle();
        });
      });
}

void PendingTracker::bucketChanged(const std::string& bucket) {
  if (index_.ready() < options_.relist_ready_below) {
    listBucket(bucket);
    return;
  }
  dirty_buckets_.insert(bucket);
  if (relist_timer_) return;
  relist_timer_ = true;
  ctx_.later(options_.relist_delay, [this] {
    relist_timer_ = false;
    if (!ctx_.active()) return;
    std::set<std::string> dirty;
    dirty.swap(dirty_buckets_);
    for (const auto& b : dirty) listBucket(b);
  });
}

void PendingTracker::listBucket(const std::string& bucket) {
  coord::Watcher watcher;
  if (bucket_watches_.insert(bucket).second) {
    watcher = [this, bucket, post = ctx_.post](const coord::WatchEvent&) {
      post([this, bucket] {
        bucket_watches_.erase(bucket);
        if (ctx_.active()) bucketChanged(bucket);
      });
    };
  }
  ++loading_;
  ctx_.coord.children(ctx_.layout.pendingBucket(bucket), std::move(watcher))
      .then([this, bucket, post = ctx_.post](const Result<std::vector<std::string>>& r) {
        post([this, bucket, r] {
          if (!ctx_.active()) return;
          if (!r) {
            bucket_watches_.erase(bucket);
            if (r.error().code() == Code::kNoNode) {  // the bucket went (retention)
              for (const auto& b : buckets_[bucket]) forget(b);
              buckets_.erase(bucket);
              scan_buckets_.erase(bucket);
              checkScan();
            } else {
              ctx_.on_read_error(r.error(), [this, bucket] { listBucket(bucket); });
            }
            settle();
            return;
          }
          const bool first = scan_buckets_.erase(bucket) > 0;
          std::set<std::string> listed(r->begin(), r->end());
          auto& known = buckets_[bucket];
          for (auto it = known.begin(); it != known.end();) {
            if (listed.count(*it)) {
              ++it;
            } else {
              forget(*it);  // its pending state went: every task of it is terminal
              it = known.erase(it);
            }
          }
          for (const auto& name : listed) {
            if (!tasks::isBatchName(name) || !known.insert(name).second) continue;
            Batch& b = batches_[name];
            b.name = name;
            if (first && !scanned_) scan_reads_[name] = 2;
            read(name);
            readRecord(name);
          }
          checkScan();
          settle();
        });
      });
}

void PendingTracker::read(const std::string& batch) {
  Batch* b = find(batch);
  if (!b) return;
  coord::Watcher watcher;
  if (!b->watched && watched_ < options_.max_watched) {
    setWatched(*b, true);
    unwatched_.erase(batch);
    watcher = [this, batch, post = ctx_.post](const coord::WatchEvent&) {
      post([this, batch] {
        Batch* b = find(batch);
        if (!b || !ctx_.active()) return;  // forgotten: its count went with it
        setWatched(*b, false);
        reread(batch);
        watchMore();
      });
    };
  } else if (!b->watched) {
    unwatched_.insert(batch);
  }
  ++loading_;
  ctx_.coord.get(ctx_.layout.pending(batch), std::move(watcher))
      .then([this, batch, post = ctx_.post](const Result<Node>& r) {
        post([this, batch, r] {
          if (ctx_.active()) {
            onRead(batch, r);
            checkScan();
          }
          settle();
        });
      });
}

void PendingTracker::reread(const std::string& batch) {
  Batch* b = find(batch);
  if (!b) return;
  if (b->busy > 0) {
    b->stale = true;  // our own multi may change it: read once it is back
    return;
  }
  read(batch);
}

void PendingTracker::onRead(const std::string& batch, const Result<Node>& r) {
  Batch* b = find(batch);
  if (!b) return;
  if (!r) {
    if (b->watched) {
      setWatched(*b, false);  // a failed read sets no watch
      watchMore();
      b = find(batch);
      if (!b) return;
    }
    if (r.error().code() == Code::kNoNode) {
      buckets_[bucketOf(batch)].erase(batch);
      forget(batch);
      return;
    }
    ctx_.on_read_error(r.error(), [this, batch] { read(batch); });
    return;
  }
  scanRead(batch);
  if (b->busy > 0) {
    b->stale = true;
    return;
  }
  if (r->stat.version == b->version) return;  // our own write, already applied
  auto next = tasks::decodePending(r->data);
  if (!next) {
    spdlog::error("scheduler: unreadable pending state of batch {}; not assigning from it", batch);
    return;
  }
  b->czxid = r->stat.czxid;
  b->version = r->stat.version;
  apply(*b, *next);
  changed_();
}

void PendingTracker::readRecord(const std::string& batch) {
  ++loading_;
  withRecord(batch, [this, batch](std::shared_ptr<const PackedRecord> record) {
    Batch* b = find(batch);
    if (b && record && !b->record) {
      b->record = record;
      ++records_held_;
      tasks::PendingState known = std::move(b->state);
      b->state = tasks::PendingState{};
      apply(*b, known);  // index what waits, now that the specs are known
      changed_();
    }
    scanRead(batch);
    checkScan();
    settle();
  });
}

void PendingTracker::withRecord(const std::string& batch, RecordDone done) {
  if (Batch* b = find(batch); b && b->record) return done(b->record);
  auto& waiters = record_waiters_[batch];
  waiters.push_back(std::move(done));
  if (waiters.size() > 1) return;  // a read is out
  ctx_.coord.get(ctx_.layout.batch(batch), nullptr)
      .then([this, batch, post = ctx_.post](const Result<Node>& r) {
        post([this, batch, r] {
          if (!r && r.error().code() != Code::kNoNode) {
            auto waiters = std::move(record_waiters_[batch]);
            record_waiters_.erase(batch);
            ctx_.on_read_error(r.error(), [this, batch, waiters = std::move(waiters)]() mutable {
              for (auto& w : waiters) withRecord(batch, std::move(w));
            });
            return;
          }
          std::shared_ptr<const PackedRecord> record;
          if (r) {
            auto decoded = PackedRecord::decode(batch, r->data);
            if (decoded) {
              record = std::make_shared<const PackedRecord>(std::move(*decoded));
            } else {
              spdlog::error("scheduler: unreadable batch record {}", batch);
            }
          }
          auto waiters = std::move(record_waiters_[batch]);
          record_waiters_.erase(batch);
          for (auto& w : waiters) w(record);
        });
      });
}

std::optional<JobIndex::Entry> PendingTracker::entryFor(const Batch& b, uint32_t index) const {
  const tasks::Waiting* w = b.state.waitingAt(index);
  if (!w || !b.record || index >= b.record->size()) return std::nullopt;
  return JobIndex::Entry{b.record, index, w->attempt, w->not_before, b.czxid, w->error};
}

void PendingTracker::apply(Batch& b, const tasks::PendingState& next) {
  if (!b.record) {
    b.state = next;  // indexed once the record is in
    return;
  }
  for (const auto& [i, w] : b.state.waiting()) {
    const tasks::Waiting* now = next.waitingAt(i);
    if ((!now || !(*now == w)) && i < b.record->size())
      index_.drop(JobIndex::keyOf(b.record.get(), i));
    if (!now && left_) left_({b.name, i});
  }
  const auto old = std::move(b.state);
  b.state = next;
  bool delayed = false;
  const int64_t now = wall_();
  for (const auto& [i, w] : b.state.waiting()) {
    const tasks::Waiting* before = old.waitingAt(i);
    if (before && *before == w) continue;  // unchanged: indexed, or in a multi of ours
    if (hold_ && hold_(b, i)) continue;    // waits for dependencies
    auto entry = entryFor(b, i);
    if (!entry) continue;
    delayed = delayed || w.not_before > now;
    index_.add(std::move(*entry), now);
  }
  if (delayed) armDelay();
}

void PendingTracker::forget(const std::string& batch) {
  auto it = batches_.find(batch);
  if (it == batches_.end()) return;
  Batch& b = it->second;
  if (b.record) {
    for (const auto& [i, w] : b.state.waiting()) {
      index_.drop(JobIndex::keyOf(b.record.get(), i));
      if (left_) left_({b.name, i});
    }
  }
  scan_reads_.erase(batch);
  if (b.watched) setWatched(b, false);  // the watch fires on a node we no longer track
  unwatched_.erase(batch);
  if (b.record) --records_held_;
  batches_.erase(it);
  watchMore();
}

void PendingTracker::scanRead(const std::string& batch) {
  auto it = scan_reads_.find(batch);
  if (it != scan_reads_.end() && --it->second <= 0) scan_reads_.erase(it);
}

void PendingTracker::checkScan() {
  if (scanned_ || !scan_listed_ || !scan_buckets_.empty() || !scan_reads_.empty()) return;
  scanned_ = true;
  scan_reads_.clear();
  changed_();
}

void PendingTracker::setWatched(Batch& b, bool watched) {
  if (b.watched == watched) return;
  b.watched = watched;
  if (watched) {
    ++watched_;
  } else {
    --watched_;
  }
}

void PendingTracker::watchMore() {
  while (watched_ < options_.max_watched && !unwatched_.empty()) {
    std::string next = *unwatched_.begin();
    unwatched_.erase(unwatched_.begin());
    Batch* b = find(next);
    if (b && !b->watched)
      reread(next);  // a busy batch is read (and watched) when its multi is back
  }
}

void PendingTracker::begin(const std::string& batch) {
  if (Batch* b = find(batch)) ++b->busy;
}

void PendingTracker::end(const std::string& batch) {
  Batch* b = find(batch);
  if (!b || b->busy == 0 || --b->busy > 0) return;
  if (b->stale) {
    b->stale = false;
    read(batch);
  }
}

void PendingTracker::wrote(const std::string& batch, int32_t version,
                           const tasks::PendingState& after, bool deleted) {
  Batch* b = find(batch);
  if (!b) return;
  if (deleted) {
    buckets_[bucketOf(batch)].erase(batch);
    forget(batch);
    return;
  }
  if (b->version != version) {
    b->stale = true;  // someone else's write came in between: take the tree's word
    if (b->busy == 0) reread(batch);
    return;
  }
  b->version = version + 1;
  apply(*b, after);
}

void PendingTracker::restore(const std::vector<JobIndex::Entry>& entries) {
  const int64_t now = wall_();
  for (const auto& e : entries) {
    Batch* b = find(e.batch());
    if (!b) continue;
    if (hold_ && hold_(*b, e.index)) continue;
    auto entry = entryFor(*b, e.index);  // from the state as known now
    if (entry) index_.add(std::move(*entry), now);
  }
  armDelay();
}

void PendingTracker::setDependencyHooks(Hold hold, Left left) {
  hold_ = std::move(hold);
  left_ = std::move(left);
}

void PendingTracker::release(const tasks::TaskRef& ref) {
  Batch* b = find(ref.batch);
  if (!b) return;
  auto entry = entryFor(*b, ref.index);
  if (!entry) return;  // no longer waiting
  index_.add(std::move(*entry), wall_());
  armDelay();
  changed_();
}

void PendingTracker::promote() {
  index_.promote(wall_());
  armDelay();
  changed_();
}

void PendingTracker::armDelay() {
  auto next = index_.nextDue();
  if (!next) return;
  if (delay_due_ != 0 && delay_due_ <= *next) return;
  int64_t due = *next;
  delay_due_ = due;
  ctx_.later(std::chrono::milliseconds(std::max<int64_t>(0, due - wall_()) + 1), [this, due] {
    if (delay_due_ == due) delay_due_ = 0;
    if (ctx_.active()) promote();
  });
}

}  // namespace drover::scheduler

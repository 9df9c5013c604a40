#include "scheduler/batch_retention.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <utility>

#include "tasks/protocol.h"

namespace drover::scheduler {

using coord::Code;
using coord::Node;
using coord::Result;

BatchRetention::BatchRetention(const LeaderContext& ctx, Options options, PendingTracker& pending,
                               WorkerTracker& workers, ChunkRequeue& requeue,
                               PendingTracker::Wall wall)
    : ctx_(ctx),
      options_(options),
      pending_(pending),
      workers_(workers),
      requeue_(requeue),
      wall_(std::move(wall)) {}

// --- Stale pointers, empty pending states ---

BatchRetention::Pointer BatchRetention::judge(const std::string& w, const std::string& chunk,
                                              const tasks::TaskRef& ref) {
  if (const auto* worker = workers_.find(w)) {
    if (!worker->ready()) return Pointer::kUnknown;
    auto c = worker->chunks.find(chunk);
    if (c == worker->chunks.end()) return Pointer::kStale;
    return c->second.chunk.find(ref) ? Pointer::kLive : Pointer::kStale;
  }
  if (!workers_.loaded() || requeue_.requeueing(w)) return Pointer::kUnknown;
  if (requeue_.cleared(w)) return Pointer::kStale;
  if (probing_.insert(w).second) {
    // Not a live worker: stale once its folder is known gone (a folder with chunks is the
    // requeue's, which rewrites these pointers itself).
    ctx_.coord.exists(ctx_.layout.assignmentsOf(w), nullptr)
        .then([this, w, post = ctx_.post](const Result<std::optional<coord::Stat>>& r) {
          post([this, w, r] {
            probing_.erase(w);
            if (r && !*r) requeue_.markCleared(w);
          });
        });
  }
  return Pointer::kUnknown;
}

void BatchRetention::sweepPointers() {
  if (!pending_.scanned() || !workers_.loaded()) return;
  std::vector<tasks::v2::PendingWrite> writes;
  for (const auto& [name, b] : pending_.batches()) {
    if (b.version < 0 || b.busy > 0 || b.stale) continue;
    tasks::PendingState after = b.state;
    bool changed = false;
    for (const auto& [index, held] : b.state.held()) {
      if (judge(held.worker, held.chunk, tasks::TaskRef{name, index}) == Pointer::kStale) {
        after.erase(index);
        changed = true;
      }
    }
    if (changed || after.empty()) writes.push_back(tasks::v2::PendingWrite{name, b.version, after});
  }
  if (!writes.empty()) {
    sendSweeps(std::make_shared<std::vector<tasks::v2::PendingWrite>>(std::move(writes)), 0);
  }
}

void BatchRetention::sendSweeps(std::shared_ptr<std::vector<tasks::v2::PendingWrite>> writes,
                                size_t from) {
  if (from >= writes->size()) return;
  auto builder = tasks::v2::Builder::fenced(ctx_.layout, ctx_.epoch);
  std::vector<size_t> group;  // indices into *writes
  size_t dropped = 0;
  size_t next = from;
  // The byte cap (the builder's op-size estimate) is checked before each write goes in, as the
  // assign round does: it stops at half of ZooKeeper's 1 MiB, leaving room for the last state.
  for (; next < writes->size() && group.size() < kSweepsPerMulti &&
         builder.bytes() < kSweepMultiBytes;
       ++next) {
    const auto& write = (*writes)[next];
    const PendingTracker::Batch* b = pending_.find(write.batch);
    if (!b) continue;  // forgotten since the sweep judged it
    builder.sweep(write);
    pending_.begin(write.batch);
    dropped += b->state.held().size() - write.after.held().size();
    group.push_back(next);
  }
  if (group.empty()) return sendSweeps(writes, next);
  auto multi = std::move(builder).finish();
  ctx_.coord.multi(std::move(multi.ops))
      .then([this, writes, group, next, dropped,
             decoder = std::make_shared<tasks::v2::Decoder>(std::move(multi.decoder)),
             post = ctx_.post](const Result<std::vector<coord::OpResult>>& r) {
        post([this, writes, group, next, dropped, decoder, r] {
          if (r && ctx_.active()) {
            // What the writes did, before the busy marks go: a deleted state is forgotten here,
            // so the watch its own delete fired reads nothing more.
            pointers_dropped_ += dropped;
            for (size_t i : group) {
              const auto& write = (*writes)[i];
              if (write.after.empty()) ++pending_deleted_;
              pending_.wrote(write.batch, write.version, write.after, write.after.empty());
              pending_.end(write.batch);
            }
            sendSweeps(writes, next);
            return;
          }
          for (size_t i : group) pending_.end((*writes)[i].batch);
          if (r || !ctx_.active()) return;
          const coord::Error& e = r.error();
          const std::optional<tasks::v2::Role> role = decoder->failed(e);
          if (ctx_.fencedBy(e, role)) return;
          if (!role || role->part != tasks::v2::Part::kPending) {
            // Not one batch's op (connection loss, say): each is read again and judged next sweep.
            for (size_t i : group) pending_.reread((*writes)[i].batch);
            return;
          }
          // That batch changed since it was read: judged again next sweep; the rest go again.
          pending_.reread(role->key);
          auto rest = std::make_shared<std::vector<tasks::v2::PendingWrite>>();
          for (size_t i : group) {
            if ((*writes)[i].batch != role->key) rest->push_back((*writes)[i]);
          }
          for (size_t i = next; i < writes->size(); ++i) rest->push_back((*writes)[i]);
          sendSweeps(rest, 0);
        });
      });
}

// --- Expiry ---

void BatchRetention::expire() {
  if (expiring_) return;
  expiring_ = true;
  budget_ = options_.expire_per_pass;
  if (options_.retention_count > 0) return expireByCount();  // then by age, if nothing to do
  expireByAge();
}

void BatchRetention::expireByAge() {
  ctx_.coord.children(ctx_.layout.batches(), nullptr)
      .then([this, post = ctx_.post](const Result<std::vector<std::string>>& r) {
        post([this, r] {
          if (!ctx_.active() || !r) {
            expiring_ = false;
            return;
          }
          // A bucket is old when everything in it was submitted before the cutoff.
          const int64_t cutoff = wall_() - options_.retention_age.count();
          std::vector<std::string> old;
          for (const auto& bucket : *r) {
            uint64_t t = 0;
            auto [end, ec] = std::from_chars(bucket.data(), bucket.data() + bucket.size(), t, 16);
            if (ec != std::errc() || end != bucket.data() + bucket.size()) continue;
            if (static_cast<int64_t>((t + 1) << 16) <= cutoff) old.push_back(bucket);
          }
          if (old.empty()) {
            expiring_ = false;
            return;
          }
          buckets_left_ = old.size();
          for (const auto& bucket : old) expireBucket(bucket);
        });
      });
}

void BatchRetention::expireBucket(const std::string& bucket) {
  ctx_.coord.children(ctx_.layout.batchBucket(bucket), nullptr)
      .then([this, bucket, post = ctx_.post](const Result<std::vector<std::string>>& r) {
        post([this, bucket, r] {
          if (!ctx_.active()) return;
          if (!r) return bucketDone("");
          std::vector<std::string> names;
          for (const auto& name : *r) {
            if (budget_ == 0) break;
            if (pending_.find(name)) continue;  // still has a pending state
            names.push_back(name);
            --budget_;
          }
          if (names.empty()) return bucketDone(r->empty() ? bucket : "");
          auto left = std::make_shared<size_t>(names.size());
          for (const auto& name : names) expireBatch(name, left, bucket);
        });
      });
}

void BatchRetention::expireBatch(const std::string& batch, std::shared_ptr<size_t> left,
                                 const std::string& bucket) {
  auto finish = [this, left, bucket] {
    if (--*left == 0) bucketDone("");  // emptied now: the bucket goes on the next pass
  };
  // The pending state must be gone (everything terminal), not only unknown to us.
  ctx_.coord.exists(ctx_.layout.pending(batch), nullptr)
      .then([this, batch, finish, post = ctx_.post](const Result<std::optional<coord::Stat>>& e) {
        post([this, batch, finish, e] {
          if (!ctx_.active()) return;
          if (!e || *e) return finish();
          ctx_.coord.children(ctx_.layout.batch(batch), nullptr)
              .then([this, batch, finish,
                     post = ctx_.post](const Result<std::vector<std::string>>& children) {
                post([this, batch, finish, children] {
                  if (!ctx_.active()) return;
                  if (!children) return finish();
                  pending_.withRecord(batch, [this, batch, finish,
                                              children](std::shared_ptr<const PackedRecord> rec) {
                    if (!ctx_.active()) return;
                    std::vector<std::string> ids;
                    if (rec) {
                      for (uint32_t i = 0; i < rec->size(); ++i) {
                        if (rec->customId(i)) ids.push_back(rec->id(i));
                      }
                    }
                    // An unreadable record is expired without id entries (they cannot be named);
                    // a missing one is already gone.
                    tasks::v2::Builder builder(ctx_.layout);
                    builder.expire(batch, *children, std::nullopt, ids);
                    ctx_.coord.multi(std::move(builder).finish().ops)
                        .then([this, batch, finish,
                               post = ctx_.post](const Result<std::vector<coord::OpResult>>& r) {
                          post([this, batch, finish, r] {
                            if (r) {
                              ++batches_expired_;
                              if (on_expired_) on_expired_(batch);
                            } else if (r.error().sessionLost()) {
                              ctx_.fence("session expired");
                            } else {
                              // NotEmpty: a record appeared since the listing; next pass.
                              spdlog::debug("scheduler: expiring batch {} failed ({})", batch,
                                            r.error().toString());
                            }
                            finish();
                          });
                        });
                  });
                });
              });
        });
      });
}

void BatchRetention::bucketDone(const std::string& empty_bucket) {
  if (!empty_bucket.empty()) {
    for (bool pending : {true, false}) {
      tasks::v2::Builder builder(ctx_.layout);
      builder.dropBucket(empty_bucket, pending);
      // NotEmpty or NoNode: not ours to decide now; looked at again next pass.
      ctx_.coord.multi(std::move(builder).finish().ops)
          .then([](const Result<std::vector<coord::OpResult>>&) {});
    }
  }
  if (buckets_left_ > 0 && --buckets_left_ == 0) expiring_ = false;
}

}  // namespace drover::scheduler

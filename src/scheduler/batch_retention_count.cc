// BatchRetention's count limit (retention_count, docs/CONFIG.md): once the finished batches hold
// more tasks than the setting, the oldest finished batches go first, expired like by age.
//
// What it costs: each pass lists /batches and the buckets still open to new batches (a bucket
// whose ~65 s ended more than kSealAfterMs ago is listed once per leadership), and lists each
// batch once it finished to learn its task count (from its result records' names). Only batches
// without a pending state count: a batch is retained or expired whole, so a finished task of a
// batch that still has waiting or held tasks stays until its batch finishes.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <tuple>

#include "scheduler/batch_retention.h"

namespace drover::scheduler {

using coord::Code;
using coord::Result;

namespace {

// How long after a bucket's time range a batch may still land in it: names carry the submitting
// API node's clock, which may run behind the leader's.
constexpr int64_t kSealAfterMs = 5 * 60 * 1000;
// Batches sized per pass, and listings of them in flight at once.
constexpr size_t kSizesPerPass = 20000;
constexpr size_t kSizeWindow = 256;

bool bucketTime(const std::string& bucket, int64_t* start_ms) {
  uint64_t t = 0;
  auto [end, ec] = std::from_chars(bucket.data(), bucket.data() + bucket.size(), t, 16);
  if (ec != std::errc() || end != bucket.data() + bucket.size()) return false;
  *start_ms = static_cast<int64_t>(t << 16);
  return true;
}

}  // namespace

void BatchRetention::expireByCount() {
  if (!pending_.loaded()) return expireByAge();  // which batches are finished is not known yet
  ctx_.coord.children(ctx_.layout.batches(), nullptr)
      .then([this, post = ctx_.post](const Result<std::vector<std::string>>& r) {
        post([this, r] {
          if (!ctx_.active()) return;
          if (!r) return expireByAge();
          std::set<std::string> listed(r->begin(), r->end());
          std::erase_if(counted_, [&](const auto& kv) { return !listed.count(kv.first); });
          to_size_.clear();
          auto left = std::make_shared<size_t>(1);  // the listing itself, released below
          for (const auto& bucket : *r) {
            int64_t start = 0;
            if (!bucketTime(bucket, &start)) continue;
            if (counted_[bucket].sealed) continue;
            ++*left;
            countBucket(bucket, left);
          }
          if (--*left == 0) sizeNext();
        });
      });
}

void BatchRetention::countBucket(const std::string& bucket, std::shared_ptr<size_t> left) {
  const int64_t listed_at = wall_();
  ctx_.coord.children(ctx_.layout.batchBucket(bucket), nullptr)
      .then([this, bucket, left, listed_at,
             post = ctx_.post](const Result<std::vector<std::string>>& r) {
        post([this, bucket, left, listed_at, r] {
          if (!ctx_.active()) return;
          if (r) {
            Bucket& b = counted_[bucket];
            std::set<std::string> names(r->begin(), r->end());
            std::erase_if(b.sizes, [&](const auto& kv) { return !names.count(kv.first); });
            int64_t start = 0;
            bucketTime(bucket, &start);
            b.sealed = start + (int64_t{1} << 16) + kSealAfterMs <= listed_at;
            for (const auto& name : names) {
              if (!tasks::isBatchName(name) || b.sizes.count(name)) continue;
              // Sized once finished (only then do its result records cover every task), and at
              // most kSizesPerPass a pass; the bucket is listed again until all are.
              if (pending_.find(name) || to_size_.size() >= kSizesPerPass) {
                b.sealed = false;
                continue;
              }
              to_size_.emplace_back(bucket, name);
            }
          }
          if (--*left == 0) sizeNext();
        });
      });
}

void BatchRetention::sizeNext() {
  if (sizing_ == 0 && to_size_.empty()) return countDone();
  while (sizing_ < kSizeWindow && !to_size_.empty()) {
    auto [bucket, batch] = std::move(to_size_.back());
    to_size_.pop_back();
    ++sizing_;
    sizeBatch(bucket, batch);
  }
}

// A finished batch's task count from its result records' names ("r-{lo}-{hi}-{seq}"): every
// task has an outcome, so the highest `hi` is the last index. A listing, not a read of the
// record (up to 512 KiB). A batch finished before the leader saw it waiting (a cancel right
// after submit) may count short; the count then errs towards keeping more, never fewer.
void BatchRetention::sizeBatch(const std::string& bucket, const std::string& batch) {
  ctx_.coord.children(ctx_.layout.batch(batch), nullptr)
      .then([this, bucket, batch, post = ctx_.post](const Result<std::vector<std::string>>& r) {
        post([this, bucket, batch, r] {
          --sizing_;
          if (!ctx_.active()) return;
          Bucket& b = counted_[bucket];
          int64_t size = 0;
          if (r) {
            for (const auto& child : *r) {
              if (auto range = tasks::resultRange(child)) {
                size = std::max<int64_t>(size, int64_t{range->second} + 1);
              }
            }
          }
          if (size > 0) {
            b.sizes[batch] = size;
          } else if (!r || r.error().code() != Code::kNoNode) {
            b.sealed = false;  // look again next pass
          }
          sizeNext();
        });
      });
}

void BatchRetention::countDone() {
  // Finished batches oldest first (bucket and name order is submit order), with their tasks.
  std::vector<std::tuple<std::string, std::string, uint64_t>> finished;
  uint64_t total = 0;
  for (const auto& [bucket, b] : counted_) {
    for (const auto& [name, size] : b.sizes) {
      if (size <= 0 || pending_.find(name)) continue;  // re-opened since (a retry)
      finished.emplace_back(bucket, name, static_cast<uint64_t>(size));
      total += static_cast<uint64_t>(size);
    }
  }
  retained_tasks_ = total;
  if (total <= options_.retention_count) return expireByAge();
  std::vector<std::pair<std::string, std::string>> victims;
  for (const auto& [bucket, name, size] : finished) {
    if (total <= options_.retention_count || budget_ == 0) break;
    victims.emplace_back(bucket, name);
    total -= size;
    --budget_;
  }
  spdlog::info("scheduler: {} finished tasks kept, {} at most: expiring the {} oldest batches",
               retained_tasks_, options_.retention_count, victims.size());
  // Forgotten now; their buckets are listed again next pass (an expiry refused NotEmpty leaves
  // the batch, to be counted again).
  for (const auto& [bucket, name] : victims) {
    counted_[bucket].sizes.erase(name);
    counted_[bucket].sealed = false;
  }
  buckets_left_ = 1;  // the pass ends (expiring_ = false) when every victim is done
  auto left = std::make_shared<size_t>(victims.size());
  for (const auto& [bucket, name] : victims) expireBatch(name, left, bucket);
}

}  // namespace drover::scheduler

#include "scheduler/cleanup.h"

#include <algorithm>
#include <set>

#include "base/clock.h"
#include "coord/paths.h"
#include "tasks/transitions.h"

namespace drover::scheduler {

using coord::Code;
using coord::Node;
using coord::Op;
using coord::OpResult;
using coord::Result;

namespace {

constexpr size_t kMaxEventDeletesPerSweep = 10000;
constexpr size_t kEventDeletesPerMulti = 500;  // ~25 KB of paths: far below jute.maxbuffer

}  // namespace

Cleanup::Cleanup(coord::Coordination& coord, const tasks::Layout& layout, Options options,
                 Post post, std::function<bool()> active)
    : coord_(coord),
      layout_(layout),
      options_(options),
      post_(std::move(post)),
      active_(std::move(active)) {}

void Cleanup::trimEvents() {
  coord_.children(layout_.events(), nullptr)
      .then([post = post_, this](const Result<std::vector<std::string>>& r) {
        post([this, r] {
          if (!active_() || !r || r->size() <= options_.events_keep) return;
          std::vector<std::pair<int64_t, std::string>> seq;
          seq.reserve(r->size());
          for (const auto& name : *r) seq.emplace_back(coord::sequenceOf(name), name);
          std::sort(seq.begin(), seq.end());
          size_t excess = std::min(seq.size() - options_.events_keep, kMaxEventDeletesPerSweep);
          // Not fenced: an event record is no token, and a deposed leader trimming the oldest
          // records harms nothing. The deletes go in multis of kEventDeletesPerMulti (one request
          // each instead of one per record); a multi that fails (a record already gone: another
          // trimmer) is retried one delete at a time.
          for (size_t first = 0; first < excess; first += kEventDeletesPerMulti) {
            size_t end = std::min(excess, first + kEventDeletesPerMulti);
            std::vector<std::string> paths;
            std::vector<Op> ops;
            for (size_t i = first; i < end; ++i) {
              paths.push_back(coord::join(layout_.events(), seq[i].second));
              ops.push_back(coord::DeleteOp{paths.back(), coord::kAnyVersion});
            }
            coord_.multi(std::move(ops))
                .then([post = post_, this, paths](const Result<std::vector<OpResult>>& m) {
                  post([this, paths, m] {
                    if (m) {
                      events_trimmed_ += paths.size();
                      return;
                    }
                    if (!active_() || m.error().sessionLost()) return;
                    for (const auto& path : paths) {
                      coord_.remove(path, coord::kAnyVersion)
                          .then([post = post_, this](const coord::Status& st) {
                            if (st) post([this] { ++events_trimmed_; });
                          });
                    }
                  });
                });
          }
        });
      });
}

void Cleanup::applyRetention() {
  // The total comes from the 256 status buckets' stats (no listing); then a bounded slice of
  // statuses is read, listing only the buckets it needs, from where the last sweep stopped.
  struct Totals {
    size_t outstanding = tasks::Layout::kJobBuckets;
    size_t total = 0;
    bool ok = true;
    std::array<int32_t, tasks::Layout::kJobBuckets> sizes{};
  };
  auto totals = std::make_shared<Totals>();
  for (int b = 0; b < tasks::Layout::kJobBuckets; ++b) {
    coord_.exists(layout_.statusBucketAt(b), nullptr)
        .then([post = post_, this, totals, b](const Result<std::optional<coord::Stat>>& r) {
          post([this, totals, b, r] {
            if (!r) totals->ok = false;
            if (r && *r) {
              totals->sizes[static_cast<size_t>(b)] = (*r)->num_children;
              totals->total += static_cast<size_t>((*r)->num_children);
            }
            if (--totals->outstanding != 0 || !totals->ok || !active_()) return;
            size_t excess = totals->total > options_.retention_count
                                ? totals->total - options_.retention_count
                                : 0;
            retention_behind_ = excess > 0;
            auto scan = std::make_shared<RetentionScan>();
            scan->excess = excess;
            scan->sizes = totals->sizes;
            scan->want = std::min(totals->total, options_.retention_reads_per_sweep);
            if (scan->want == 0) return;
            retentionList(scan);
          });
        });
  }
}

void Cleanup::retentionList(const std::shared_ptr<RetentionScan>& scan) {
  if (!active_()) return;
  // Skip empty buckets (their stats said so); stop once every bucket was visited.
  while (scan->visited < tasks::Layout::kJobBuckets &&
         scan->sizes[static_cast<size_t>(retention_bucket_)] == 0) {
    ++scan->visited;
    retention_bucket_ = (retention_bucket_ + 1) % tasks::Layout::kJobBuckets;
    retention_cursor_.clear();
  }
  if (scan->visited >= tasks::Layout::kJobBuckets || scan->ids.size() >= scan->want) {
    retentionRead(scan);
    return;
  }
  int b = retention_bucket_;
  coord_.children(layout_.statusBucketAt(b), nullptr)
      .then([post = post_, this, scan, b](const Result<std::vector<std::string>>& r) {
        post([this, scan, b, r] {
          if (!active_() || !r) return;
          std::vector<std::string> names = *r;
          std::sort(names.begin(), names.end());
          std::set<std::string> present(names.begin(), names.end());
          for (auto it = terminal_seen_.begin(); it != terminal_seen_.end();) {
            bool stale = tasks::Layout::bucketIndex(it->first) == b && !present.count(it->first);
            it = stale ? terminal_seen_.erase(it) : std::next(it);
          }
          auto from = std::upper_bound(names.begin(), names.end(), retention_cursor_);
          for (; from != names.end() && scan->ids.size() < scan->want; ++from) {
            scan->ids.push_back(*from);
            retention_cursor_ = *from;
          }
          if (from == names.end()) {  // this bucket is done: the next one next time
            ++scan->visited;
            retention_bucket_ = (retention_bucket_ + 1) % tasks::Layout::kJobBuckets;
            retention_cursor_.clear();
          }
          retentionList(scan);
        });
      });
}

// A pass reads and deletes a few thousand statuses. The session answers its requests in order,
// so a burst of them would hold back the assignment multis queued behind it (the backlog drain
// stalled for about a second each pass when 5,000 reads and then 5,000 single deletes went out
// at once). So reads go through a window and deletes go in multis, one multi in flight.
constexpr size_t kRetentionReadWindow = 128;
constexpr size_t kRetentionDeletesPerMulti = 200;

void Cleanup::retentionRead(const std::shared_ptr<RetentionScan>& scan) {
  if (scan->ids.empty()) return;
  scan->cutoff = base::wallMillis() - options_.retention_age.count();
  while (scan->outstanding < kRetentionReadWindow && scan->next < scan->ids.size()) {
    retentionReadOne(scan);
  }
}

void Cleanup::retentionReadOne(const std::shared_ptr<RetentionScan>& scan) {
  const std::string id = scan->ids[scan->next++];
  ++scan->outstanding;
  coord_.get(layout_.status(id), nullptr)
      .then([post = post_, this, id, scan](const Result<Node>& g) {
        post([this, id, scan, g] {
          if (!active_()) return;
          --scan->outstanding;
          std::optional<tasks::TaskStatus> status;
          if (g) {
            auto j = tasks::parseJson(g->data);
            if (j) status = tasks::statusFromJson(*j);
          }
          if (status && tasks::isTerminal(status->state)) {
            int64_t finished = status->finished_at ? status->finished_at : g->stat.mtime_ms;
            if (finished < scan->cutoff) {
              // Versioned: a status rewritten since the read is left alone. No token to
              // consume: the task is over.
              scan->doomed.emplace_back(id, g->stat.version);
              terminal_seen_.erase(id);  // seen young by an earlier pass: not doomed twice
              if (scan->excess > 0) --scan->excess;
            } else {
              terminal_seen_[id] = {finished, g->stat.version};
            }
          }
          if (scan->next < scan->ids.size()) {
            retentionReadOne(scan);
          } else if (scan->outstanding == 0) {
            retentionFinish(scan);
          }
        });
      });
}

void Cleanup::retentionFinish(const std::shared_ptr<RetentionScan>& scan) {
  if (scan->excess > 0) {
    // Over the count: the oldest terminal statuses seen so far go too.
    std::vector<std::pair<int64_t, std::string>> oldest;
    for (const auto& [id, fv] : terminal_seen_) oldest.emplace_back(fv.first, id);
    std::sort(oldest.begin(), oldest.end());
    size_t m = std::min({scan->excess, oldest.size(), options_.retention_reads_per_sweep});
    for (size_t i = 0; i < m; ++i) {
      const std::string& id = oldest[i].second;
      scan->doomed.emplace_back(id, terminal_seen_[id].second);
      terminal_seen_.erase(id);
    }
  }
  if (scan->doomed.empty()) return;
  retentionDelete(
      std::make_shared<const std::vector<std::pair<std::string, int32_t>>>(std::move(scan->doomed)),
      0);
}

void Cleanup::retentionDelete(Doomed doomed, size_t from) {
  if (!active_() || from >= doomed->size()) return;
  size_t to = std::min(doomed->size(), from + kRetentionDeletesPerMulti);
  tasks::Txn txn(layout_);
  for (size_t i = from; i < to; ++i) {
    txn.add(tasks::expire(layout_, (*doomed)[i].first, (*doomed)[i].second));
  }
  coord_.multi(std::move(txn).finish().ops)
      .then([post = post_, this, doomed, from, to](const Result<std::vector<coord::OpResult>>& r) {
        post([this, doomed, from, to, r] {
          if (!active_()) return;
          bool one_op_failed =
              !r && (r.error().code() == Code::kBadVersion || r.error().code() == Code::kNoNode);
          if (r) {
            statuses_deleted_ += to - from;
          } else if (one_op_failed) {
            // A status changed or went since it was read, failing the whole multi: delete the
            // others one by one, each still versioned.
            for (size_t i = from; i < to; ++i) {
              coord_.remove(layout_.status((*doomed)[i].first), (*doomed)[i].second)
                  .then([post = post_, this](const coord::Status& s) {
                    if (s) post([this] { ++statuses_deleted_; });
                  });
            }
          } else {
            return;  // connection or session trouble: the next pass finds the rest again
          }
          retentionDelete(doomed, to);
        });
      });
}

}  // namespace drover::scheduler

#include "api/admission.h"

#include <fmt/format.h>

#include <algorithm>

#include "tasks/batch.h"

namespace drover::api {

using Clock = std::chrono::steady_clock;

std::optional<size_t> Admission::countPending() {
  auto node = awaitFor(coord_.get(layout_.pendingRoot(), nullptr), options_.call_timeout);
  if (!node) return std::nullopt;
  auto count = tasks::decodeWaiting(node->data);
  if (!count) return std::nullopt;  // no leader has counted yet
  return static_cast<size_t>(count->waiting);
}

// How stale the estimate may be, and why that is fine: it is the count read at most
// pending_ttl ago (1 s by default) plus every task this store admitted since, so it misses only
// what other nodes accepted in that window (and errs high by what workers took meanwhile, and by
// admitted submits that then wrote nothing). The cap is flood control, not a quota: passing it
// by one second of the cluster's accepted submits, or refusing a little early for a second, is
// harmless, while an exact count would cost a read of every pending state per submit. A refresh is
// one read of the leader's count per submitting node, whatever the backlog; that count is itself up
// to its publishing interval old, so the estimate is up to ~2 s stale in all.
StoreResult<void> Admission::admit(size_t tasks) {
  if (options_.max_pending == 0) return {};
  auto fresh = [&] {
    std::lock_guard lock(pending_mu_);
    return checked_at_ && Clock::now() - *checked_at_ < options_.pending_ttl;
  };
  if (!fresh()) {
    bool checked = false;
    {
      std::lock_guard lock(pending_mu_);
      checked = checked_at_.has_value();
    }
    // One thread reads at a time. While another reads, go on with what the last read found;
    // before the first read has ended, wait for it.
    std::unique_lock refresh(pending_refresh_mu_, std::defer_lock);
    if (checked) {
      (void)refresh.try_lock();
    } else {
      refresh.lock();
    }
    if (refresh.owns_lock() && !fresh()) {
      auto read_at = Clock::now();
      auto count = countPending();
      std::lock_guard lock(pending_mu_);
      checked_at_ = Clock::now();
      if (count) {
        pending_read_ = *count;
        pending_added_ = 0;
        pending_read_at_ = read_at;
      }
      // A failed read keeps the old count; with none, the submit goes on (it answers 503 itself
      // if ZooKeeper is gone), and the count is tried again a ttl later.
    }
  }
  std::lock_guard lock(pending_mu_);
  if (!pending_read_at_) return {};
  size_t pending = pending_read_ + pending_added_;
  if (pending + tasks > options_.max_pending) {
    return problem(Failure::kTooMany,
                   fmt::format("{} tasks are pending, the cap is {}{}: retry later", pending,
                               options_.max_pending,
                               tasks > 1 ? fmt::format(" and the batch holds {}", tasks) : ""));
  }
  pending_added_ += tasks;
  return {};
}

}  // namespace drover::api

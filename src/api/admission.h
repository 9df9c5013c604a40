#pragma once

// Flood control for the API (StoreOptions::max_pending): whether `tasks` more submits may be
// accepted, from a cached count of the pending tasks. Thread-safe.
//
// Where the count comes from depends on the protocol: the first one's job buckets (256 stat
// reads), or protocol v2's waiting count, which the leader publishes in /pending's own data
// (scheduler/waiting_publisher.h; one read).

#include <chrono>
#include <mutex>
#include <optional>

#include "api/problem.h"
#include "api/store_options.h"
#include "coord/coordination.h"
#include "tasks/layout.h"

namespace drover::api {

class Admission {
 public:
  // The count is the leader's, in /pending's data (docs/ZNODES.md "The waiting count").
  Admission(coord::Coordination& coord, const tasks::Layout& layout, const StoreOptions& options)
      : coord_(coord), layout_(layout), options_(options) {}

  // kTooMany if `tasks` more would pass the cap, else counts them in. Never lists ZooKeeper: see
  // countPending().
  StoreResult<void> admit(size_t tasks);

 private:
  // The pending tasks: the leader's published waiting count; nullopt when it cannot be read or
  // no leader has published one yet.
  std::optional<size_t> countPending();

  coord::Coordination& coord_;
  const tasks::Layout& layout_;
  const StoreOptions& options_;

  // The last count of the pending tasks, when it was read, and the tasks admitted since (under
  // pending_mu_). One thread reads a new count at a time (pending_refresh_mu_); the others go on
  // with the old one meanwhile.
  std::mutex pending_mu_;
  std::optional<std::chrono::steady_clock::time_point> pending_read_at_;
  // When the last read of the count ended, whatever it found: with no count published yet (a
  // leader still scanning a flood), or the read failed, the next read is one ttl later too.
  // Without it every submit re-read the count, one at a time under pending_refresh_mu_: single
  // submits queued behind each other's reads (docs/PERFORMANCE.md).
  std::optional<std::chrono::steady_clock::time_point> checked_at_;
  size_t pending_read_ = 0;
  size_t pending_added_ = 0;
  std::mutex pending_refresh_mu_;
};

}  // namespace drover::api

#pragma once

// What the scheduler's components (ChunkRequeue, ...) get from the scheduler that drives them: its
// session and tree, its fencing token, and its executor. Every callback runs on, or posts to, the
// scheduler's executor thread; components keep no locks.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "base/clock.h"
#include "coord/coordination.h"
#include "tasks/layout.h"
#include "tasks/protocol.h"

namespace drover::scheduler {

struct LeaderContext {
  coord::Coordination& coord;
  const tasks::Layout& layout;
  int32_t epoch = 0;  // the data version of /epoch this leadership holds (the fencing token E)
  // Runs `fn` on the executor; dropped once the scheduler stopped (then nothing is touched).
  std::function<void(std::function<void()>)> post;
  // Runs `fn` on the executor after `delay`; dropped once the scheduler stopped.
  std::function<void(base::Duration, std::function<void()>)> later;
  // Whether the scheduler still works (running and not fenced). Executor thread only.
  std::function<bool()> active;
  // Stops all work: another node leads, or the session is gone. Executor thread only.
  std::function<void(const std::string& reason)> fence;
  // A failed read: fences on a lost session, else runs `retry` after a backoff.
  std::function<void(const coord::Error&, std::function<void()> retry)> on_read_error;
  // The next backoff delay after a failed or ambiguous call.
  std::function<base::Duration()> retry_delay;

  // A failed protocol-v2 multi of this leadership: fences and returns true when the session is
  // gone or closing, or when the epoch check failed (`role`: what the multi's decoder names);
  // false when the failure is the caller's to handle.
  bool fencedBy(const coord::Error& e, const std::optional<tasks::v2::Role>& role) const {
    if (e.sessionLost()) {
      fence("session expired");
    } else if (e.code() == coord::Code::kClosing) {
      fence("session closed");
    } else if (role && role->part == tasks::v2::Part::kEpoch) {
      fence("epoch moved");
    } else {
      return false;
    }
    return true;
  }
};

}  // namespace drover::scheduler

#pragma once

// Protocol v2: the leader's count of waiting tasks, published for the API's max_pending_tasks
// and for /v1/cluster under a large backlog (docs/ZNODES.md "Protocol v2", docs/CONFIG.md). The
// count is what the leader's job index holds (ready and delayed tasks: everything not held by a
// worker; of those, the delayed) and the tasks its pending states show held by workers, written
// into /pending's own data as {"waiting", "delayed", "held", "at"} by one fenced multi
// (Builder::publishWaiting) at most once per interval, and only when it changed. Nothing is written
// before the leader's first scan of /pending is in (a partial count would let a flood through). The
// API reads that one znode at most once a second per node, so the cap costs ZooKeeper about one
// write and one read per node per second, whatever the rate of submits.
//
// Threads: driven by its scheduler on the scheduler's executor (LeaderContext); not thread-safe.

#include <cstdint>
#include <functional>
#include <optional>

#include "base/clock.h"
#include "scheduler/leader_context.h"
#include "tasks/batch.h"

namespace drover::scheduler {

class WaitingPublisher {
 public:
  struct Options {
    base::Duration interval = base::seconds(1);
  };
  // `count()`: the counts (`at` is filled in here), or nullopt while not known yet. `wall()`:
  // wall-clock ms.
  using Count = std::function<std::optional<tasks::WaitingCount>()>;
  WaitingPublisher(const LeaderContext& ctx, Options options, Count count,
                   std::function<int64_t()> wall);

  // Publishes now if the count changed, then every interval.
  void start();
  uint64_t writes() const { return writes_; }

 private:
  void tick();
  void publish(tasks::WaitingCount count);

  const LeaderContext& ctx_;
  const Options options_;
  const Count count_;
  const std::function<int64_t()> wall_;
  bool started_ = false;
  bool inflight_ = false;
  std::optional<tasks::WaitingCount> published_;  // the counts last written (and seen to land)
  uint64_t writes_ = 0;
};

}  // namespace drover::scheduler

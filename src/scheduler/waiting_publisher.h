#pragma once

// Protocol v2: the leader's count of waiting tasks, published for the API's max_pending_tasks
// (docs/ZNODES.md "Protocol v2", docs/CONFIG.md). The count is what the leader's job index holds
// (ready and delayed tasks: everything not held by a worker), written into /pending's own data
// as {"waiting", "at"} by one fenced multi (Builder::publishWaiting) at most once per interval,
// and only when it changed. Nothing is written before the leader's first scan of /pending is in
// (a partial count would let a flood through). The API reads that one znode at most once a second
// per node, so the cap costs ZooKeeper about one write and one read per node per second, whatever
// the rate of submits.
//
// Threads: driven by its scheduler on the scheduler's executor (LeaderContext); not thread-safe.

#include <cstdint>
#include <functional>
#include <optional>

#include "base/clock.h"
#include "scheduler/leader_context.h"

namespace drover::scheduler {

class WaitingPublisher {
 public:
  struct Options {
    base::Duration interval = base::seconds(1);
  };
  // `count()`: the waiting tasks, or nullopt while not known yet. `wall()`: wall-clock ms.
  WaitingPublisher(const LeaderContext& ctx, Options options,
                   std::function<std::optional<uint64_t>()> count, std::function<int64_t()> wall);

  // Publishes now if the count changed, then every interval.
  void start();
  uint64_t writes() const { return writes_; }

 private:
  void tick();
  void publish(uint64_t count);

  const LeaderContext& ctx_;
  const Options options_;
  const std::function<std::optional<uint64_t>()> count_;
  const std::function<int64_t()> wall_;
  bool started_ = false;
  bool inflight_ = false;
  std::optional<uint64_t> published_;  // the count last written (and seen to land)
  uint64_t writes_ = 0;
};

}  // namespace drover::scheduler

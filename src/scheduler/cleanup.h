#pragma once

// The leader's housekeeping of the event log: trims /events to its newest records (docs/ZNODES.md
// "Protocol v2"; the batches' retention is BatchRetention's, scheduler/batch_retention.h).
//
// Threads: driven by its owner on the owner's executor; every completion comes back through
// `post`, which must run the callback on that executor (or drop it once the owner stopped), and
// does nothing once `active` says the owner stopped. Not thread-safe otherwise.

#include <cstdint>
#include <functional>
#include <string>

#include "coord/coordination.h"
#include "tasks/layout.h"

namespace drover::scheduler {

class Cleanup {
 public:
  struct Options {
    size_t events_keep = 1000;  // /events records kept
  };
  using Post = std::function<void(std::function<void()>)>;

  Cleanup(coord::Coordination& coord, const tasks::Layout& layout, Options options, Post post,
          std::function<bool()> active);

  // Deletes the oldest event records past events_keep (at most 10,000 per call), in multis.
  void trimEvents();
  uint64_t eventsTrimmed() const { return events_trimmed_; }

 private:
  coord::Coordination& coord_;
  const tasks::Layout& layout_;
  const Options options_;
  const Post post_;
  const std::function<bool()> active_;
  uint64_t events_trimmed_ = 0;
};

}  // namespace drover::scheduler

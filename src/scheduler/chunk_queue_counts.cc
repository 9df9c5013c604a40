#include "scheduler/chunk_queue_counts.h"

namespace drover::scheduler {

std::optional<QueueHeld> heldPerQueue(const std::map<std::string, WorkerTracker::Worker>& workers,
                                      const PendingTracker& pending) {
  QueueHeld held;
  for (const auto& [w, worker] : workers) {
    // A chunk not read yet, or tasks in a multi whose chunks are not known here yet.
    if (!worker.ready() || worker.reserved > 0) return std::nullopt;
    for (const auto& [name, c] : worker.chunks) {
      for (const auto& item : c.chunk.items) {
        const tasks::TaskSpec* spec = item.spec ? &*item.spec : pending.spec(item.ref);
        if (spec) {
          ++held.counts[spec->queue];
        } else {
          ++held.unknown;
        }
      }
    }
  }
  return held;
}

}  // namespace drover::scheduler

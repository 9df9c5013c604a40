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
        const PackedRecord* record = item.spec ? nullptr : pending.record(item.ref.batch);
        if (item.spec) {
          ++held.counts[item.spec->queue];
        } else if (record && item.ref.index < record->size()) {
          ++held.counts[record->route(item.ref.index).queue];
        } else {
          ++held.unknown;
        }
      }
    }
  }
  return held;
}

}  // namespace drover::scheduler

#pragma once

// Protocol v2: how many tasks of each queue the workers hold, for queue `max_running` limits
// (docs/ROUTING.md). "Held" is strict: every task a chunk lists (assigned, prefetched or
// running) plus the tasks of assign multis still in flight, so a worker can never start more of
// a queue than its limit even with prefetch. The leader knows every chunk: the ones it wrote,
// and the ones an earlier leader wrote, read once when found; commits shrink them.
//
// Counted only while some queue has a limit, once per assignment round (the cost is one pass
// over the held tasks, bounded by the workers' slots + prefetch).
//
// Thread safety: plain logic, driven on the scheduler's executor.

#include <map>
#include <optional>
#include <string>

#include "scheduler/pending_tracker.h"
#include "scheduler/queue_board.h"
#include "scheduler/worker_tracker.h"

namespace drover::scheduler {

// The held counts per queue, or nullopt while not every worker's chunks are read (a new leader
// learning the tree, or a multi of ours in flight): a limited queue then counts as full. A held
// task whose queue cannot be told (its spec is neither inline nor in a cached batch record)
// counts against every limited queue (QueueHeld::unknown): never over a limit.
std::optional<QueueHeld> heldPerQueue(const std::map<std::string, WorkerTracker::Worker>& workers,
                                      const PendingTracker& pending);

}  // namespace drover::scheduler

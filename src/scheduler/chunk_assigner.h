#pragma once

// Protocol v2: what one assignment round gives to whom. It takes ready tasks from the JobIndex
// in assignment order (priority, then FIFO), matches each route against the workers once per
// round (routing.h), lets the picker choose among the capable workers with room (idle slots
// first: a task never goes to a prefetch queue while a slot is free anywhere), and cuts each
// worker's tasks into chunks of at most kMaxChunkTasks / kMaxChunkBytes, specs inline when small.
// A round stops at the multi size budget; the rest waits for the next round.
//
// Fair assignment (issue 9): a task that goes to a prefetch queue, or finds no room at all,
// must not wait behind lower-priority tasks that a worker holds unstarted. reclaimable() names
// those (never the worker's first `slots` tasks, nor any it reports running), for the leader to
// take back (ChunkRequeue::reclaim); the next round then places them behind.
//
// Thread safety: plain logic, driven on the scheduler's executor.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "scheduler/job_index.h"
#include "scheduler/pending_tracker.h"
#include "scheduler/strategy.h"
#include "scheduler/worker_tracker.h"
#include "tasks/batch.h"

namespace drover::scheduler {

struct PlannedChunk {
  std::string worker;
  std::string name;
  tasks::Chunk chunk;
  size_t bytes = 0;                      // estimated encoded size
  std::vector<JobIndex::Entry> entries;  // what was taken from the index (restored on failure)
};

struct Round {
  std::vector<PlannedChunk> chunks;
  size_t tasks = 0;
  // Per route: the highest priority of a task that went to a prefetch queue or found no room.
  std::map<Route, int> behind;
};

class ChunkAssigner {
 public:
  struct Limits {
    size_t max_round_tasks = 4096;
    size_t max_round_bytes = 512 * 1024;  // chunks' estimated bytes; ZooKeeper's limit is 1 MiB
  };
  ChunkAssigner(WorkerPicker& picker, Limits limits) : picker_(picker), limits_(limits) {}

  // Takes tasks from `index` into chunks for `workers` (their `assigned` grows as they get
  // some). `open(queue, taken)`: whether one more task of `queue` may go out (queue settings).
  // `name()` gives each new chunk its name.
  Round plan(JobIndex& index, std::vector<WorkerLoad>& workers, const PendingTracker& pending,
             const std::function<bool(const std::string&, int)>& open,
             const std::function<std::string()>& name);

  // Unstarted tasks of lower priority than `round.behind` of a route their worker serves:
  // worker -> chunk name -> refs. At most held - slots per worker, lowest priority first.
  static std::map<std::string, std::map<std::string, std::vector<tasks::TaskRef>>> reclaimable(
      const Round& round, const std::map<std::string, WorkerTracker::Worker>& workers,
      const PendingTracker& pending, const std::function<bool(const std::string&)>& draining);

 private:
  WorkerPicker& picker_;
  const Limits limits_;
};

}  // namespace drover::scheduler

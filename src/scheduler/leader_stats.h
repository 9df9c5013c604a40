#pragma once

// What the elected leader's scheduler (BatchScheduler) reports, and how it tells its owner that
// it was fenced.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "scheduler/strategy.h"

namespace drover::scheduler {

// A consistent copy of the scheduler's counters, for metrics and the dashboard.
struct LeaderStats {
  bool running = false;
  bool fenced = false;
  std::string fenced_reason;
  uint64_t assigned_total = 0;   // tasks whose assign multi committed
  uint64_t requeued_total = 0;   // dead workers' tasks moved back to pending
  uint64_t failed_total = 0;     // dead workers' tasks failed (no attempts left)
  uint64_t reclaimed_total = 0;  // unstarted tasks taken back for fairness
  uint64_t batches = 0;          // assign multis committed
  uint64_t batch_failures = 0;   // assign multis that failed (any reason)
  uint64_t fenced_count = 0;     // 0 or 1
  uint64_t events_trimmed = 0;
  uint64_t statuses_deleted = 0;
  size_t pending = 0;  // assignable now (not_before passed)
  size_t delayed = 0;  // waiting for their not_before
  // Outcomes of dependencies kept in memory (forgotten as retention expires their batches).
  size_t dependency_outcomes = 0;
  // Batch records held in memory: one per batch with a task waiting or held, none for a
  // finished batch (docs/PERFORMANCE.md "Leader memory").
  size_t batch_records = 0;
  std::map<int, size_t> pending_by_priority;
  std::vector<WorkerLoad> workers;  // live workers, sorted by id
};

// Called once when the scheduler stops for good: another node leads, or the session ended.
using FencedCallback = std::function<void(std::string reason)>;

}  // namespace drover::scheduler

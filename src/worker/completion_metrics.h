#pragma once

// Completions by outcome and the time task attempts ran and waited (docs/METRICS.md), recorded
// by the worker that committed them: drover_tasks_completed_total{outcome},
// drover_task_duration_seconds and drover_task_queue_wait_seconds. Times are wall-clock ms as
// the task's record shows them; 0 means unknown and is not observed.

#include <cstdint>

namespace drover::worker {

void recordCompletion(const char* outcome, int64_t submitted_at, int64_t started_at,
                      int64_t finished_at);

}  // namespace drover::worker

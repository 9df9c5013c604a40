#include "worker/completion_metrics.h"

#include "base/clock.h"
#include "base/metrics.h"

namespace drover::worker {

void recordCompletion(const char* outcome, int64_t submitted_at, int64_t started_at,
                      int64_t finished_at) {
  static auto& registry = base::metrics();
  registry
      .counter("drover_tasks_completed_total",
               "Task attempts whose outcome this worker committed, by outcome",
               {{"outcome", outcome}})
      .inc();
  static auto& run =
      registry.histogram("drover_task_duration_seconds", "Run time of committed task attempts",
                         base::kTaskDurationBuckets);
  static auto& wait = registry.histogram("drover_task_queue_wait_seconds",
                                         "Time from submission to the start of an attempt",
                                         base::kTaskDurationBuckets);
  int64_t end = finished_at > 0 ? finished_at : base::wallMillis();
  if (started_at > 0 && end >= started_at) run.observe((end - started_at) / 1000.0);
  if (submitted_at > 0 && started_at >= submitted_at) {
    wait.observe((started_at - submitted_at) / 1000.0);
  }
}

}  // namespace drover::worker

#pragma once

// Throughput history for GET /v1/stats/history: each node keeps a ring of its own counters
// (tasks submitted to its API, attempts its worker finished by outcome) in fixed wall-clock
// buckets, so a dashboard opened now can draw the last hour at once. In memory only: a restarted
// node starts an empty ring.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/executor.h"
#include "base/metrics.h"
#include "tasks/task.h"

namespace drover::api {

// Cumulative totals as the node's counters hold them, or the increase within one bucket.
struct StatsCounts {
  double submitted = 0;  // drover_tasks_submitted_total{result="created"}
  double succeeded = 0;  // drover_tasks_completed_total{outcome=...}
  double failed = 0;
  double retried = 0;
  bool operator==(const StatsCounts&) const = default;
};

struct StatsBucket {
  int64_t at = 0;  // wall-clock ms where the bucket starts (a multiple of the step)
  StatsCounts counts;
};

// A fixed number of buckets of `step_ms` each, newest last. record() takes cumulative totals and
// adds their increase since the previous record() to the bucket of `wall_ms`; the first call only
// sets the baseline. A total that went down (counters never do, so: a reset) is a new baseline.
// Thread-safe.
class StatsRing {
 public:
  explicit StatsRing(size_t slots = 360, int64_t step_ms = 10000);

  void record(int64_t wall_ms, const StatsCounts& totals);
  // Every bucket of the window ending at `now_ms` (slots of them, oldest first), zeros where
  // nothing was recorded.
  std::vector<StatsBucket> window(int64_t now_ms) const;
  int64_t stepMs() const { return step_ms_; }

 private:
  const size_t slots_;
  const int64_t step_ms_;
  mutable std::mutex mu_;
  std::vector<StatsBucket> ring_;  // indexed by (at / step) % slots; stale when `at` differs
  std::optional<StatsCounts> last_;
};

// Reads this node's counters from `registry` every `ring.stepMs()` on a thread of its own.
class StatsSampler {
 public:
  StatsSampler(base::Registry& registry, StatsRing& ring);
  ~StatsSampler();
  StatsSampler(const StatsSampler&) = delete;
  StatsSampler& operator=(const StatsSampler&) = delete;

  // The node's counters now.
  static StatsCounts read(const base::Registry& registry);

 private:
  void tick();  // executor thread

  base::Registry& registry_;
  StatsRing& ring_;
  base::ThreadExecutor executor_{"stats-history"};
};

// {"step_ms", "now", "buckets": [{"at", "submitted", "succeeded", "failed", "retried"}...]}
tasks::Json historyJson(const std::vector<StatsBucket>& buckets, int64_t step_ms, int64_t now_ms);
// Adds the buckets of `other` (the same JSON shape, say a peer's answer) into `sum` by their
// `at`; buckets `sum` does not have are ignored (each node aligns to the same wall-clock step, so
// only clock skew makes them differ). False if `other` is not that shape (nothing is added).
bool addHistory(tasks::Json& sum, const tasks::Json& other);

// The cluster's history as the answering node sees it: its own window plus, for each peer
// ("host:port" of another node's API), that node's own window (GET /v1/stats/history?scope=node,
// asked in parallel with `authorization` as its Authorization header, at most `timeout` each).
// The answer is historyJson() summed, with "nodes": [{"http", "ok", "error"?}] saying whose
// counts are in it, so a partial sum is visible as one. Blocks up to about `timeout`.
tasks::Json clusterHistory(const StatsRing& ring, const std::string& self,
                           const std::vector<std::string>& peers, bool tls,
                           const std::string& authorization, std::chrono::milliseconds timeout);

}  // namespace drover::api

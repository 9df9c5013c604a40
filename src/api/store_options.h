#pragma once

// The API store's options and the values its calls answer with.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/backoff.h"
#include "coord/coordination.h"
#include "tasks/records.h"
#include "tasks/task.h"

namespace drover::api {

struct StoreOptions {
  // How long one coordination call may take before it counts as timed out (outcome unknown).
  std::chrono::milliseconds call_timeout{5000};
  // How long submit/cancel keep trying to learn the outcome of an ambiguous write.
  std::chrono::milliseconds settle_deadline{10000};
  base::Backoff backoff{std::chrono::milliseconds(20), std::chrono::milliseconds(1000), 2.0, 0.5};
  // Largest encoded multi submitBatch sends (ZooKeeper's packet limit is 1 MiB).
  size_t max_multi_bytes = 900 * 1024;
  // Re-reads cancel makes when the token moved under it.
  int cancel_attempts = 8;
  // Gets in flight at once when scanning /status.
  size_t pipeline = 256;
  // How long cluster() reuses its task counts (at least; twice the time the last count took).
  std::chrono::milliseconds counts_ttl{1000};
  // Protocol 2: with up to this many unfinished batches, cluster() reads each one's pending state
  // (exact counts); past it, it takes the waiting, delayed and held counts the leader publishes
  // in /pending's data (~1 s old) and re-tallies only a bounded share of the unfinished batches'
  // outcomes per count, so a count's cost does not grow with the backlog (docs/ZNODES.md).
  size_t exact_count_batches = 1000;
  // Group commit of single submits: submits that arrive while this many group multis are in
  // flight wait and go out together in the next one (at most group_max_tasks). 0: every submit
  // sends its own multi.
  size_t group_inflight = 2;
  size_t group_max_tasks = 500;
  // Under load (the last group carried more than one submit), a group waits this long for more
  // submits before it goes out, so that it carries more: each group is a batch record, a
  // multi, and reads and writes of the leader, so tasks per group set the cost of a single
  // submit. Alone (the last group carried one), a submit goes at once. 0: no wait. 2 ms: 64
  // clients of single submits, one run each (docs/PERFORMANCE.md), 1,199 -> 1,441 tasks/s and
  // 1.15 -> 0.90 ZooKeeper requests per task.
  std::chrono::microseconds group_linger{2000};
  // Each node's cache of immutable records (batch and result records, per BatchReader): at most
  // about this many bytes of memory, oldest records out first. Counted as decoded, not as
  // encoded: a no-op task is ~25 bytes in its batch record and ~400 decoded (a 64 MiB budget of
  // encoded bytes held ~1 GiB; docs/PERFORMANCE.md).
  size_t record_cache_bytes = 32 * 1024 * 1024;
  // Flood control: a submit that would take the pending tasks (the jobs under /jobs: tasks
  // waiting for a worker, retries in backoff included) past this is refused with kTooMany and
  // writes nothing. 0: no cap.
  size_t max_pending = 0;
  // How long one count of the pending tasks is used (with this store's own submits added)
  // before it is read again.
  std::chrono::milliseconds pending_ttl{1000};
};

// Where a newest-first listing continues: after (czxid, id), exclusive. Its text form (a page's
// `next`) is "<czxid>-<id>".
struct NewestCursor {
  int64_t czxid = 0;
  std::string id;
};

struct SubmitResult {
  tasks::TaskStatus status;
  bool created = false;  // true: this call committed it (202); false: an identical repeat (200)
};

struct BatchResult {
  std::vector<std::string> ids;
  bool created = false;  // false: every task already existed with the same spec (200)
};

struct CancelResult {
  tasks::TaskStatus status;
  bool already_finished = false;  // it was terminal before: returned unchanged
};

struct TaskPage {
  std::vector<tasks::TaskStatus> tasks;
  std::optional<std::string> next;  // the cursor for the following page; nullopt at the end
};

// What a listing keeps besides the state: tasks of one type and of one queue ("" = any).
struct TaskFilter {
  std::string type;
  std::string queue;
  bool matches(const tasks::TaskSpec& spec) const {
    return (type.empty() || spec.type == type) && (queue.empty() || spec.queue == queue);
  }
};

struct WorkerView {
  tasks::WorkerInfo info;
  size_t assigned = 0;  // children of /assignments/{id}: running, starting or queued there
  size_t running = 0;   // of those, the ones in slots: min(assigned, slots)
  bool leader = false;
};

struct LeaderInfo {
  std::string id;
  int64_t epoch = 0;
};

// The live workers and the leader, as /leader names it (read once, so that the flag on the
// workers and `leader` agree). A leader with no worker role is named but marks no worker.
struct WorkersView {
  std::vector<WorkerView> workers;
  std::optional<LeaderInfo> leader;
};

struct ClusterView {
  std::optional<LeaderInfo> leader;
  coord::SessionEvent session;
  size_t workers = 0;
  std::map<tasks::State, size_t> counts;  // every state present, zero included
};

}  // namespace drover::api

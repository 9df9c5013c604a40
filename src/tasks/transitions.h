#pragma once

// The znode protocol's transitions, in one home (docs/ZNODES.md "The token rule").
//
// Every change of a task's state is one of the functions below. Each returns the task's part of
// a ZooKeeper multi (`TaskOps`): its ops, the role of each op, and the event the change reports.
// A `Txn` strings the parts of one or more tasks into one multi, in the order they were added,
// appends the event record, and keeps a `Decoder` that turns a failed op index back into (which
// task, which step). Nobody outside this module knows op orders or counts ops: the API, the
// leader, the worker and the test fixtures build their multis here.
//
// Thread safety: plain values; no shared state.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coord/coordination.h"
#include "coord/error.h"
#include "tasks/layout.h"
#include "tasks/records.h"
#include "tasks/task.h"

namespace drover::tasks {

// The role of one op in a transition. What a failure there means:
enum class Step : uint8_t {
  kEpoch,       // the leader's check(/epoch, E) failed: another node leads; step down
  kToken,       // the task's token (its job or assignment, versioned) was consumed, moved or
                // rewritten since it was read: someone else decided the task
  kStatus,      // the status create (NodeExists: the id is taken) or set (NoNode: a broken tree)
  kJob,         // the job create (NodeExists: a job without a token rule; a broken tree)
  kAssignment,  // the assignment create (NoNode: the worker's folder is gone; NodeExists: broken)
  kEvent,       // the event record: not about any task
  kRetained,    // retention's versioned delete of a terminal status: it changed or went
};
std::string_view stepName(Step step);

// The largest status record a writer stores. A larger one (a huge result) is stored with its
// result replaced by a note and its error cut to 4 KiB: one task must not fail a batch.
inline constexpr size_t kMaxStatusBytes = 768 * 1024;
// The status record as stored (see kMaxStatusBytes); invalid UTF-8 in results is replaced.
std::string encodeStatus(const TaskStatus& status);

// An estimate of what an op adds to a multi request on the wire (path, data, framing).
size_t opBytes(const coord::Op& op);

// One task's part of a multi.
struct TaskOps {
  std::vector<coord::Op> ops;
  std::vector<Step> steps;         // steps[i] is the role of ops[i]
  std::optional<TaskEvent> event;  // the change it reports in the event log
  size_t bytes = 0;                // opBytes of the ops, plus its share of the event record
  std::string id;                  // the task
};

// --- The transitions (docs/ZNODES.md has the table) ---

// Submit: create the status (`pending`, as given) and the job (attempt 1, not to be assigned
// before wall-clock ms `not_before`).
TaskOps submit(const Layout& layout, const TaskStatus& pending, int64_t not_before = 0);

// Assign (leader): consume the job at `job_version`, create the worker's assignment, set the
// status `assigned` to `worker`. Carries submitted_at and the last error along (see Job).
TaskOps assign(const Layout& layout, const Job& job, int32_t job_version, std::string_view worker,
               int64_t now);

// Start (worker): check the assignment at `version`, write `running` (create it when the status
// is missing in a broken tree: `status_exists` false).
TaskOps start(const Layout& layout, std::string_view worker, int32_t version,
              const TaskStatus& running, bool status_exists);

// Commit (worker): consume the assignment at `version` and write the outcome `target`; with
// `retry`, also create the job of the next attempt (`target` is then `pending`).
TaskOps commit(const Layout& layout, std::string_view worker, int32_t version,
               const TaskStatus& target, const std::optional<Job>& retry, bool status_exists,
               int64_t now);

// Requeue (leader, the worker is gone): consume the assignment at `version`; `next` is the
// status to write (`pending` with `retry` the job of the next attempt, or `failed`), or nullopt
// for a leftover of a finished task (only the token goes).
TaskOps requeue(const Layout& layout, std::string_view worker, std::string_view id, int32_t version,
                const std::optional<TaskStatus>& next, const std::optional<Job>& retry,
                int64_t now);

// Cancel (API): consume the token `current` names (its job when pending, else its worker's
// assignment; any version) and write `cancelled`.
TaskOps cancel(const Layout& layout, const TaskStatus& current, const TaskStatus& cancelled);

// Retention (leader): delete a terminal status read at `version`.
TaskOps expire(const Layout& layout, std::string_view id, int32_t version);

// Which task of a multi failed, at which step.
struct FailedStep {
  Step step = Step::kEvent;
  size_t task = 0;  // the index of the task in the Txn, in the order added
};

// Maps a multi's failed op back to its task and step.
class Decoder {
 public:
  // nullopt when the failure is not one op's (connection loss, session expiry, timeout, closing:
  // ask the Error whether the outcome is unknown or the session is lost).
  std::optional<FailedStep> failed(const coord::Error& error) const;

 private:
  friend class Txn;
  struct Slot {
    Step step;
    uint32_t task;
  };
  std::vector<Slot> slots_;
};

struct Transaction {
  std::vector<coord::Op> ops;
  Decoder decoder;
  std::vector<std::string> ids;  // the tasks, in order (ids[FailedStep::task])
};

// A multi under construction. Not reusable after finish().
class Txn {
 public:
  explicit Txn(const Layout& layout);
  // A leader's multi: its first op checks /epoch at version `epoch` (Step::kEpoch).
  static Txn fenced(const Layout& layout, int32_t epoch);

  // Appends one task's part; returns its index.
  size_t add(TaskOps part);
  size_t tasks() const { return ids_.size(); }
  bool empty() const { return ids_.empty(); }
  // The request's estimated size so far (opBytes), the event record included.
  size_t bytes() const { return bytes_; }
  // Whether `part` still fits below `max_bytes` and `max_tasks` (a first part always fits: the
  // caller decides what to do with a single part over the bound).
  bool fits(const TaskOps& part, size_t max_tasks, size_t max_bytes) const;

  // The multi: the parts' ops in order, then one event record carrying every part's event (none
  // when no part reports one).
  Transaction finish() &&;

 private:
  const Layout* layout_;
  std::vector<coord::Op> ops_;
  Decoder decoder_;
  std::vector<TaskEvent> events_;
  std::vector<std::string> ids_;
  size_t bytes_ = 0;
};

}  // namespace drover::tasks

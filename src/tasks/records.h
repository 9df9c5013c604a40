#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "coord/coordination.h"
#include "tasks/layout.h"
#include "tasks/task.h"

namespace drover::tasks {

// What a worker registers in /workers/{id} (ephemeral).
struct WorkerInfo {
  std::string id;
  std::string host;
  int64_t pid = 0;
  int slots = 1;
  std::vector<std::string> labels;
  std::string http;        // "127.0.0.1:8080", where its REST API listens ("" if none)
  int64_t started_at = 0;  // wall-clock ms
  // Tasks the leader may assign beyond `slots`; they wait on the worker, unstarted, and start as
  // slots free (0 when absent: written by a worker that predates prefetch).
  int prefetch = 0;
  // Routing (docs/ROUTING.md): the queues it serves and the task types it runs (empty `types`:
  // written by a worker that predates routing, taken to run any type).
  std::vector<std::string> queues{"default"};
  std::vector<std::string> types{};
  // Protocol v2 (docs/ZNODES.md): the tasks this worker runs now, id -> started_at (wall-clock
  // ms). The worker rewrites its record when the set changes, at most every 250 ms; readers
  // show a held task `running` when its worker lists it here, else `assigned`.
  std::map<std::string, int64_t> running{};
};
Json toJson(const WorkerInfo& info);
std::optional<WorkerInfo> workerFromJson(const Json& j);

// One task state change, for the cluster-wide event log (/events) that feeds /v1/events.
struct TaskEvent {
  std::string id;
  State state = State::kPending;
  int attempt = 0;
  std::string worker;
  int64_t at = 0;  // wall-clock ms
  // A terminal change of a task that has a callback_url: the webhook dispatcher delivers it.
  bool callback = false;
};
Json toJson(const TaskEvent& event);
std::optional<TaskEvent> eventFromJson(const Json& j);

// The op that appends one event record (a JSON array of TaskEvent) to the log: a persistent
// sequential child "e-NNNNNNNNNN" of layout.events(). Writers put it into the same multi as the
// status changes it reports, so the log holds exactly the changes that were committed. The
// leader trims the log to a bounded number of records.
coord::CreateOp eventOp(const Layout& layout, const std::vector<TaskEvent>& events);

}  // namespace drover::tasks

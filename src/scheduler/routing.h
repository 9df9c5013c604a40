#pragma once

// Routing (docs/ROUTING.md): which workers may take a task. A task names a queue, the labels a
// worker must all have, and its type; a worker serves queues, has labels and runs types. Tasks
// with the same (queue, labels, type) form a route; the leader matches a route against the
// workers once per assignment round, not once per task, and a route no worker may take, or whose
// queue is paused or at its limit, waits without holding up the others.
//
// Thread safety: plain values.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tasks/task.h"

namespace drover::scheduler {

struct Route {
  std::string queue;
  std::vector<std::string> labels;  // sorted
  std::string type;
  auto operator<=>(const Route&) const = default;
  bool operator==(const Route&) const = default;
};
Route routeOf(const tasks::TaskSpec& spec);

// What routing knows of a worker.
struct WorkerRouting {
  std::vector<std::string> queues;
  std::vector<std::string> labels;
  std::vector<std::string> types;  // empty: any type (a worker that predates routing)
  bool draining = false;           // takes nothing new
};
bool serves(const WorkerRouting& worker, const Route& route);

// A queue's settings (/queues/{name}, set through the API).
struct QueueSettings {
  bool paused = false;
  int max_running =
      0;  // at most this many of its tasks assigned or running cluster-wide; 0: no limit
  bool operator==(const QueueSettings&) const = default;
};
tasks::Json toJson(const QueueSettings& q);
std::optional<QueueSettings> queueSettingsFromJson(const tasks::Json& j);

// Why no live worker may take a task of `route`, in words for `waiting_for`; nullopt when one
// may (the task then waits only for a free slot, or for its queue).
std::optional<std::string> unroutable(const std::vector<WorkerRouting>& workers,
                                      const Route& route);
// Why a task of `route` waits, all things considered: no capable worker, its queue paused or
// at its limit (`running` of its queue's tasks held by workers), or "a free slot".
std::string waitingFor(const std::vector<WorkerRouting>& workers, const Route& route,
                       const QueueSettings& queue, int running);

}  // namespace drover::scheduler

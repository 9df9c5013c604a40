#include "scheduler/routing.h"

#include <fmt/format.h>

#include <algorithm>

namespace drover::scheduler {

namespace {

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

bool hasAll(const std::vector<std::string>& have, const std::vector<std::string>& want) {
  return std::all_of(want.begin(), want.end(), [&](const auto& l) { return contains(have, l); });
}

}  // namespace

Route routeOf(const tasks::TaskSpec& spec) { return Route{spec.queue, spec.labels, spec.type}; }

bool serves(const WorkerRouting& w, const Route& r) {
  return !w.draining && contains(w.queues, r.queue) && hasAll(w.labels, r.labels) &&
         (w.types.empty() || contains(w.types, r.type));
}

tasks::Json toJson(const QueueSettings& q) {
  return {{"paused", q.paused}, {"max_running", q.max_running}};
}

std::optional<QueueSettings> queueSettingsFromJson(const tasks::Json& j) {
  if (!j.is_object()) return std::nullopt;
  QueueSettings q;
  auto paused = j.find("paused");
  if (paused != j.end()) {
    if (!paused->is_boolean()) return std::nullopt;
    q.paused = paused->get<bool>();
  }
  auto max = j.find("max_running");
  if (max != j.end()) {
    if (!max->is_number_integer() || max->get<int64_t>() < 0 || max->get<int64_t>() > 1'000'000) {
      return std::nullopt;
    }
    q.max_running = max->get<int>();
  }
  return q;
}

std::optional<std::string> unroutable(const std::vector<WorkerRouting>& workers,
                                      const Route& route) {
  if (workers.empty()) return "no live worker";
  bool queue = false;
  bool labels = false;
  bool type = false;
  for (const auto& w : workers) {
    if (serves(w, route)) return std::nullopt;
    bool q = contains(w.queues, route.queue);
    bool l = q && hasAll(w.labels, route.labels);
    bool t = l && (w.types.empty() || contains(w.types, route.type));
    queue |= q;
    labels |= l;
    type |= t;
  }
  if (!queue) return fmt::format("no live worker serves queue '{}'", route.queue);
  if (!labels) {
    return fmt::format("no live worker of queue '{}' has labels [{}]", route.queue,
                       fmt::join(route.labels, ", "));
  }
  if (!type) {
    return fmt::format("no live worker of queue '{}'{} runs type '{}'", route.queue,
                       route.labels.empty()
                           ? std::string()
                           : fmt::format(" with labels [{}]", fmt::join(route.labels, ", ")),
                       route.type);
  }
  return std::string("every worker that may take it is draining");
}

std::string waitingFor(const std::vector<WorkerRouting>& workers, const Route& route,
                       const QueueSettings& queue, int running) {
  if (queue.paused) return fmt::format("queue '{}' is paused", route.queue);
  if (auto why = unroutable(workers, route)) return *why;
  if (queue.max_running > 0 && running >= queue.max_running) {
    return fmt::format("queue '{}' is at its limit of {} running", route.queue, queue.max_running);
  }
  return "a free slot";
}

}  // namespace drover::scheduler

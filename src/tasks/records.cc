#include "tasks/records.h"

#include <algorithm>

namespace drover::tasks {

Json toJson(const WorkerInfo& info) {
  return {{"id", info.id},
          {"host", info.host},
          {"pid", info.pid},
          {"slots", info.slots},
          {"prefetch", info.prefetch},
          {"labels", info.labels},
          {"queues", info.queues},
          {"types", info.types},
          {"http", info.http},
          {"started_at", info.started_at},
          {"running", info.running}};
}

std::optional<WorkerInfo> workerFromJson(const Json& j) {
  try {
    WorkerInfo info;
    info.id = j.at("id").get<std::string>();
    info.host = j.value("host", "");
    info.pid = j.value("pid", int64_t{0});
    info.slots = j.value("slots", 1);
    info.prefetch = std::max(0, j.value("prefetch", 0));
    info.labels = j.value("labels", std::vector<std::string>{});
    info.queues = j.value("queues", std::vector<std::string>{"default"});
    info.types = j.value("types", std::vector<std::string>{});
    info.http = j.value("http", "");
    info.started_at = j.value("started_at", int64_t{0});
    info.running = j.value("running", std::map<std::string, int64_t>{});
    return info;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

Json toJson(const TaskEvent& e) {
  Json j = {{"id", e.id}, {"state", stateName(e.state)}, {"attempt", e.attempt}, {"at", e.at}};
  if (!e.worker.empty()) j["worker"] = e.worker;
  if (e.callback) j["callback"] = true;
  return j;
}

std::optional<TaskEvent> eventFromJson(const Json& j) {
  try {
    auto state = parseState(j.at("state").get<std::string>());
    if (!state) return std::nullopt;
    return TaskEvent{j.at("id").get<std::string>(), *state,
                     j.value("attempt", 0),         j.value("worker", ""),
                     j.value("at", int64_t{0}),     j.value("callback", false)};
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

coord::CreateOp eventOp(const Layout& layout, const std::vector<TaskEvent>& events) {
  Json arr = Json::array();
  for (const auto& e : events) arr.push_back(toJson(e));
  return coord::CreateOp{
      layout.events() + "/e-", arr.dump(), coord::CreateMode::kPersistentSequential, {}};
}

}  // namespace drover::tasks

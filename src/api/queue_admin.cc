#include "api/queue_admin.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "base/ids.h"
#include "coord/paths.h"

namespace drover::api {

using coord::Code;

QueueAdmin::QueueAdmin(coord::Coordination& coord, const tasks::Layout& layout,
                       std::chrono::milliseconds call_timeout)
    : coord_(coord), layout_(layout), call_timeout_(call_timeout) {}

StoreResult<scheduler::QueueSettings> QueueAdmin::settings(const std::string& name) {
  auto r = await(coord_.get(layout_.queue(name), nullptr));
  if (!r) {
    if (r.error().code() == Code::kNoNode) return scheduler::QueueSettings{};
    return tl::unexpected(fromCoord(r.error(), "reading the queue's settings"));
  }
  auto j = tasks::parseJson(r->data);
  auto s = j ? scheduler::queueSettingsFromJson(*j) : std::nullopt;
  if (!s) return problem(Failure::kInternal, fmt::format("queue {}: unreadable settings", name));
  return *s;
}

StoreResult<std::vector<QueueView>> QueueAdmin::list(const std::vector<WorkerView>& workers) {
  std::set<std::string> names;
  auto r = await(coord_.children(layout_.queues(), nullptr));
  if (!r && r.error().code() != Code::kNoNode) {
    return tl::unexpected(fromCoord(r.error(), "listing the queues"));
  }
  if (r) names.insert(r->begin(), r->end());
  for (const auto& w : workers) names.insert(w.info.queues.begin(), w.info.queues.end());
  std::vector<QueueView> out;
  for (const auto& name : names) {
    auto s = settings(name);
    if (!s) return tl::unexpected(s.error());
    QueueView view{name, *s, {}};
    for (const auto& w : workers) {
      const auto& q = w.info.queues;
      if (std::find(q.begin(), q.end(), name) != q.end()) view.workers.push_back(w.info.id);
    }
    out.push_back(std::move(view));
  }
  return out;
}

StoreResult<scheduler::QueueSettings> QueueAdmin::update(const std::string& name,
                                                         const tasks::Json& patch) {
  if (!base::isValidName(name) || name.size() > 64) {
    return problem(Failure::kBadRequest, "queue: must be 1-64 characters of A-Z a-z 0-9 . _ -");
  }
  if (!patch.is_object()) return problem(Failure::kBadRequest, "the body must be a JSON object");
  for (const auto& [key, value] : patch.items()) {
    if (key != "paused" && key != "max_running") {
      return problem(Failure::kBadRequest, fmt::format("{}: unknown field", key));
    }
  }
  if (!scheduler::queueSettingsFromJson(patch)) {
    return problem(Failure::kBadRequest,
                   "paused must be true or false; max_running an integer from 0 (no limit) to "
                   "1000000");
  }
  if (auto st = coord::ensurePath(coord_, layout_.queues()); !st) {
    return tl::unexpected(fromCoord(st.error(), "creating /queues"));
  }
  // Read, merge, write at the version read; another admin's write in between: read again.
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto r = await(coord_.get(layout_.queue(name), nullptr));
    if (!r && r.error().code() != Code::kNoNode) {
      return tl::unexpected(fromCoord(r.error(), "reading the queue's settings"));
    }
    tasks::Json merged = tasks::Json::object();
    if (r) {
      auto current = tasks::parseJson(r->data);
      if (current && current->is_object()) merged = *current;
    }
    for (const auto& [key, value] : patch.items()) merged[key] = value;
    auto next = scheduler::queueSettingsFromJson(merged);
    if (!next) next = scheduler::queueSettingsFromJson(patch);
    std::string data = scheduler::toJson(*next).dump();
    coord::Result<coord::Stat> w =
        r ? await(coord_.set(layout_.queue(name), data, r->stat.version))
          : await(coord_.create({layout_.queue(name), data, coord::CreateMode::kPersistent, {}}))
                .map([](const std::string&) { return coord::Stat{}; });
    if (w) return *next;
    if (w.error().code() == Code::kBadVersion || w.error().code() == Code::kNodeExists) continue;
    return tl::unexpected(fromCoord(w.error(), "writing the queue's settings"));
  }
  return problem(Failure::kUnavailable, "the queue's settings kept changing; try again");
}

StoreResult<bool> QueueAdmin::drain(const std::string& id, const std::vector<WorkerView>& workers) {
  bool live = std::any_of(workers.begin(), workers.end(),
                          [&](const WorkerView& w) { return w.info.id == id; });
  if (!live) return problem(Failure::kNotFound, fmt::format("no live worker {}", id));
  if (auto st = coord::ensurePath(coord_, layout_.draining()); !st) {
    return tl::unexpected(fromCoord(st.error(), "creating /draining"));
  }
  auto r = await(coord_.create({layout_.drain(id), "", coord::CreateMode::kPersistent, {}}));
  if (!r && r.error().code() != Code::kNodeExists) {
    return tl::unexpected(fromCoord(r.error(), "asking the worker to drain"));
  }
  return true;
}

StoreResult<bool> QueueAdmin::undrain(const std::string& id) {
  auto r = await(coord_.remove(layout_.drain(id), coord::kAnyVersion));
  if (!r && r.error().code() != Code::kNoNode) {
    return tl::unexpected(fromCoord(r.error(), "withdrawing the drain"));
  }
  return r.has_value();
}

StoreResult<std::vector<std::string>> QueueAdmin::draining() {
  auto r = await(coord_.children(layout_.draining(), nullptr));
  if (!r) {
    if (r.error().code() == Code::kNoNode) return std::vector<std::string>{};
    return tl::unexpected(fromCoord(r.error(), "listing draining workers"));
  }
  return *r;
}

StoreResult<std::string> QueueAdmin::waitingFor(
    const tasks::TaskSpec& spec, const std::function<StoreResult<WorkersView>()>& workers) {
  std::lock_guard lock(mu_);
  auto now = std::chrono::steady_clock::now();
  if (!snapshot_ || now - snapshot_->at > kSnapshotTtl) {
    auto live = workers();
    if (!live) return tl::unexpected(live.error());
    auto drains = draining();
    if (!drains) return tl::unexpected(drains.error());
    Snapshot s{now, {}, {}};
    for (const auto& w : live->workers) {
      bool d = std::find(drains->begin(), drains->end(), w.info.id) != drains->end();
      s.fleet.push_back({w.info.queues, w.info.labels, w.info.types, d});
    }
    snapshot_ = std::move(s);
  }
  auto q = snapshot_->queues.find(spec.queue);
  if (q == snapshot_->queues.end()) {
    auto read = settings(spec.queue);
    if (!read) return tl::unexpected(read.error());
    q = snapshot_->queues.emplace(spec.queue, *read).first;
  }
  // The API does not count a queue's held tasks (the leader does); a limit is named as such.
  std::string why = scheduler::waitingFor(snapshot_->fleet, scheduler::routeOf(spec), q->second, 0);
  if (why == "a free slot" && q->second.max_running > 0) {
    why = fmt::format("a free slot (queue '{}' runs at most {} at once)", spec.queue,
                      q->second.max_running);
  }
  return why;
}

}  // namespace drover::api

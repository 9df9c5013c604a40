// BatchStore's check of `depends_on` before a submit writes anything (docs/ZNODES.md
// "Dependencies (issue 10): decisions"): references inside the batch and cycles are
// tasks/dag.h's; every other id must name an existing task that has not failed or been
// cancelled (one that succeeded counts as met).
#include <fmt/format.h>

#include "api/batch_store.h"
#include "tasks/batch.h"
#include "tasks/dag.h"

namespace drover::api {

std::optional<Problem> BatchStore::checkDepends(const std::vector<tasks::TaskSpec>& specs,
                                                bool single) {
  bool any = false;
  for (const auto& s : specs) any = any || !s.depends_on.empty();
  if (!any) return std::nullopt;
  auto deps = tasks::resolveDeps(specs);
  if (!deps) {
    // A single submit has no batch to name: its field is plain `depends_on`.
    const std::string field = single ? "depends_on" : deps.error().field;
    return Problem{Failure::kBadRequest, fmt::format("{}: {}", field, deps.error().detail)};
  }
  if (single) {
    for (const auto& ref : specs[0].depends_on) {
      if (ref.starts_with('#')) {
        return Problem{Failure::kBadRequest,
                       fmt::format("depends_on: '{}': #N names a task of the same batch; a single "
                                   "submit has none",
                                   ref)};
      }
    }
  }
  for (const auto& id : deps->externalIds()) {
    auto unknown = [&] {
      return Problem{
          Failure::kBadRequest,
          fmt::format("depends_on: no task '{}' (neither in this submit nor existing)", id)};
    };
    auto ref = reader_.resolve(id);
    if (!ref) return ref.error();
    if (!*ref) return unknown();
    auto place = reader_.locate(**ref);
    if (!place) return place.error();
    if (!*place) return unknown();
    if ((*place)->kind != TaskPlace::Kind::kFinished) continue;  // it may still succeed
    const tasks::State state = (*place)->status.state;
    if (state == tasks::State::kFailed || state == tasks::State::kCancelled) {
      return Problem{Failure::kBadRequest,
                     fmt::format("depends_on: task '{}' has {} already; its dependents could "
                                 "never run",
                                 id, tasks::stateName(state))};
    }
  }
  return std::nullopt;
}

StoreResult<tasks::TaskStatus> BatchStore::get(const std::string& id) {
  auto status = reader_.get(id);
  if (!status || status->spec.depends_on.empty() || status->attempts > 0 ||
      (status->state != tasks::State::kPending && status->state != tasks::State::kWaiting)) {
    return status;
  }
  auto ref = reader_.resolve(id);
  if (!ref || !*ref) return status;
  auto record = reader_.batch((*ref)->batch);
  if (!record || !*record) return status;
  const tasks::BatchRecord& rec = **record;
  auto idAt = [&](uint32_t i) {
    return rec.tasks[i].id.empty() ? tasks::generatedId({rec.name, i}) : rec.tasks[i].id;
  };
  for (const auto& dep : status->spec.depends_on) {
    std::string dep_id = dep;
    if (auto at = tasks::parseIndexRef(dep); at && *at < rec.tasks.size()) dep_id = idAt(*at);
    auto found = reader_.get(dep_id);
    if (!found) {
      if (found.error().failure == Failure::kNotFound) continue;  // expired: it ran long ago
      return tl::unexpected(found.error());
    }
    if (found->state != tasks::State::kSucceeded) status->waiting_for.push_back(dep_id);
  }
  if (!status->waiting_for.empty()) status->state = tasks::State::kWaiting;
  return status;
}

}  // namespace drover::api

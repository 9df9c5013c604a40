#include "api/schedule_store.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/clock.h"
#include "coord/paths.h"

namespace drover::api {

using coord::Code;
using scheduler::ScheduleSpec;
using scheduler::ScheduleState;

ScheduleStore::ScheduleStore(coord::Coordination& coord, tasks::Layout layout,
                             std::chrono::milliseconds call_timeout,
                             std::function<int64_t()> now_ms)
    : coord_(coord),
      layout_(std::move(layout)),
      call_timeout_(call_timeout),
      now_ms_(now_ms ? std::move(now_ms) : [] { return base::wallMillis(); }) {}

int64_t ScheduleStore::nowS() const { return now_ms_() / 1000; }

std::optional<int64_t> ScheduleStore::nextOf(const ScheduleSpec& spec,
                                             const ScheduleState& state) const {
  auto times = scheduler::SlotTimes::of(spec);
  if (!times) return std::nullopt;
  return times->next(std::max(state.cursor, nowS()));
}

StoreResult<ScheduleStore::Created> ScheduleStore::create(const ScheduleSpec& spec) {
  const int64_t now = nowS();
  auto r = await(coord_.multi(scheduler::createScheduleOps(layout_, spec, now)));
  if (!r && r.error().code() == Code::kNoNode) {
    // The first schedule of this tree: make /schedules, then try once more.
    if (auto st = coord::ensurePath(coord_, scheduler::schedulesPath(layout_)); !st) {
      return tl::unexpected(fromCoord(st.error(), "creating /schedules"));
    }
    r = await(coord_.multi(scheduler::createScheduleOps(layout_, spec, now)));
  }
  if (r) {
    ScheduleState state;
    state.cursor = now;
    return Created{{spec, state, nextOf(spec, state)}, true};
  }
  if (r.error().code() != Code::kNodeExists && !r.error().outcomeUnknown()) {
    return tl::unexpected(fromCoord(r.error(), "creating the schedule"));
  }
  // It exists (ours, if the outcome was unknown, or another's): equal is a repeat.
  auto existing = get(spec.id);
  if (!existing) {
    if (existing.error().failure == Failure::kNotFound) {
      return tl::unexpected(fromCoord(r.error(), "creating the schedule"));
    }
    return tl::unexpected(existing.error());
  }
  if (existing->spec != spec) {
    return problem(Failure::kConflict,
                   fmt::format("schedule {} exists with another spec", spec.id));
  }
  return Created{*existing, r.error().outcomeUnknown()};
}

StoreResult<ScheduleView> ScheduleStore::get(const std::string& id) {
  auto spec_node = await(coord_.get(scheduler::schedulePath(layout_, id), nullptr));
  if (!spec_node && spec_node.error().code() == Code::kNoNode) {
    return problem(Failure::kNotFound, fmt::format("no schedule {}", id));
  }
  if (!spec_node) return tl::unexpected(fromCoord(spec_node.error(), "reading the schedule"));
  auto state_node = await(coord_.get(scheduler::scheduleStatePath(layout_, id), nullptr));
  if (!state_node && state_node.error().code() == Code::kNoNode) {
    return problem(Failure::kNotFound, fmt::format("no schedule {}", id));  // being deleted
  }
  if (!state_node) return tl::unexpected(fromCoord(state_node.error(), "reading the schedule"));
  auto sj = tasks::parseJson(spec_node->data);
  auto spec = sj ? scheduler::scheduleFromJson(*sj) : std::nullopt;
  auto tj = tasks::parseJson(state_node->data);
  auto state = tj ? scheduler::scheduleStateFromJson(*tj) : std::nullopt;
  if (!spec || !state) {
    return problem(Failure::kInternal, fmt::format("schedule {} is unreadable", id));
  }
  ScheduleView v{std::move(*spec), *state, std::nullopt};
  v.next = nextOf(v.spec, v.state);
  return v;
}

StoreResult<std::vector<ScheduleView>> ScheduleStore::list() {
  auto kids = await(coord_.children(scheduler::schedulesPath(layout_), nullptr));
  if (!kids && kids.error().code() == Code::kNoNode) return std::vector<ScheduleView>{};
  if (!kids) return tl::unexpected(fromCoord(kids.error(), "listing schedules"));
  std::sort(kids->begin(), kids->end());
  std::vector<ScheduleView> out;
  for (const auto& id : *kids) {
    auto v = get(id);
    if (!v && v.error().failure == Failure::kNotFound) continue;  // deleted since the listing
    if (!v) return tl::unexpected(v.error());
    out.push_back(std::move(*v));
  }
  return out;
}

StoreResult<void> ScheduleStore::remove(const std::string& id) {
  auto r = await(coord_.multi(scheduler::deleteScheduleOps(layout_, id)));
  if (r) return {};
  if (r.error().code() == Code::kNoNode) {
    return problem(Failure::kNotFound, fmt::format("no schedule {}", id));
  }
  if (r.error().outcomeUnknown()) {
    // Settle it: gone is what was asked for.
    auto still = await(coord_.exists(scheduler::schedulePath(layout_, id), nullptr));
    if (still && !*still) return {};
  }
  return tl::unexpected(fromCoord(r.error(), "deleting the schedule"));
}

}  // namespace drover::api

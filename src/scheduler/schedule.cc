#include "scheduler/schedule.h"

#include <fmt/format.h>

#include "base/ids.h"

namespace drover::scheduler {

using tasks::Json;

namespace {

tl::unexpected<ScheduleError> bad(std::string field, std::string detail) {
  return tl::unexpected(ScheduleError{std::move(field), std::move(detail)});
}

std::optional<Overlap> parseOverlap(std::string_view s) {
  if (s == "allow") return Overlap::kAllow;
  if (s == "skip") return Overlap::kSkip;
  return std::nullopt;
}

std::optional<Catchup> parseCatchup(std::string_view s) {
  if (s == "none") return Catchup::kNone;
  if (s == "one") return Catchup::kOne;
  if (s == "all") return Catchup::kAll;
  return std::nullopt;
}

}  // namespace

std::string_view overlapName(Overlap o) { return o == Overlap::kSkip ? "skip" : "allow"; }

std::string_view catchupName(Catchup c) {
  switch (c) {
    case Catchup::kNone:
      return "none";
    case Catchup::kOne:
      return "one";
    case Catchup::kAll:
      return "all";
  }
  return "none";
}

tl::expected<ScheduleSpec, ScheduleError> parseSchedule(const Json& body,
                                                        const TaskCheck& parse_task) {
  if (!body.is_object()) return bad("", "the body must be a JSON object");
  static const std::vector<std::string> kFields = {"id",   "cron",    "every_s", "timezone",
                                                   "task", "overlap", "catchup"};
  for (const auto& [key, value] : body.items()) {
    if (std::find(kFields.begin(), kFields.end(), key) == kFields.end()) {
      return bad(key, "unknown field");
    }
  }
  ScheduleSpec spec;
  auto id = body.find("id");
  if (id == body.end() || !id->is_string()) return bad("id", "is required (a string)");
  spec.id = id->get<std::string>();
  if (!base::isValidName(spec.id) || spec.id.size() > kMaxScheduleIdLength) {
    return bad("id", fmt::format("must be 1-{} characters of A-Z a-z 0-9 . _ - and not . or ..",
                                 kMaxScheduleIdLength));
  }
  auto cron = body.find("cron");
  auto every = body.find("every_s");
  if ((cron == body.end()) == (every == body.end())) {
    return bad("cron", "give exactly one of cron and every_s");
  }
  if (cron != body.end()) {
    if (!cron->is_string()) return bad("cron", "must be a string");
    auto parsed = base::CronSchedule::parse(cron->get<std::string>());
    if (!parsed) return bad("cron", parsed.error());
    spec.cron = cron->get<std::string>();
  } else {
    if (!every->is_number_integer() || every->get<int64_t>() < 1 ||
        every->get<int64_t>() > kMaxEverySeconds) {
      return bad("every_s",
                 fmt::format("must be a whole number of seconds, 1-{}", kMaxEverySeconds));
    }
    spec.every_s = every->get<int64_t>();
  }
  if (auto tz = body.find("timezone"); tz != body.end()) {
    if (!tz->is_string()) return bad("timezone", "must be a string (an IANA zone)");
    spec.timezone = tz->get<std::string>();
  }
  if (auto zone = base::CronZone::find(spec.timezone); !zone) return bad("timezone", zone.error());
  if (auto o = body.find("overlap"); o != body.end()) {
    auto v = o->is_string() ? parseOverlap(o->get<std::string>()) : std::nullopt;
    if (!v) return bad("overlap", "must be \"allow\" or \"skip\"");
    spec.overlap = *v;
  }
  if (auto c = body.find("catchup"); c != body.end()) {
    auto v = c->is_string() ? parseCatchup(c->get<std::string>()) : std::nullopt;
    if (!v) return bad("catchup", "must be \"none\", \"one\" or \"all\"");
    spec.catchup = *v;
  }
  auto task = body.find("task");
  if (task == body.end() || !task->is_object()) return bad("task", "is required (an object)");
  if (task->contains("id")) return bad("task.id", "is set by each firing ({schedule-id}-{slot})");
  Json with_id = *task;
  with_id["id"] = firingTaskId(spec.id, 0);
  auto normal = parse_task(with_id);
  if (!normal) {
    const auto& e = normal.error();
    return bad(e.field.empty() ? "task" : "task." + e.field, e.detail);
  }
  spec.task = *normal;
  spec.task.erase("id");
  return spec;
}

Json toJson(const ScheduleSpec& spec) {
  Json j = {{"id", spec.id},
            {"timezone", spec.timezone},
            {"task", spec.task},
            {"overlap", overlapName(spec.overlap)},
            {"catchup", catchupName(spec.catchup)}};
  if (spec.every_s > 0) {
    j["every_s"] = spec.every_s;
  } else {
    j["cron"] = spec.cron;
  }
  return j;
}

Json toJson(const ScheduleState& state) {
  Json j = {{"cursor", state.cursor},
            {"last_task", state.last_task},
            {"fired", state.fired},
            {"skipped", state.skipped}};
  j["last_slot"] = state.last_slot ? Json(*state.last_slot) : Json(nullptr);
  return j;
}

std::optional<ScheduleSpec> scheduleFromJson(const Json& j) {
  try {
    ScheduleSpec s;
    s.id = j.at("id").get<std::string>();
    s.cron = j.value("cron", std::string());
    s.every_s = j.value("every_s", int64_t{0});
    s.timezone = j.value("timezone", std::string("UTC"));
    s.task = j.at("task");
    auto o = parseOverlap(j.value("overlap", std::string("allow")));
    auto c = parseCatchup(j.value("catchup", std::string("none")));
    if (!o || !c || !s.task.is_object() || (s.cron.empty() == (s.every_s <= 0))) {
      return std::nullopt;
    }
    s.overlap = *o;
    s.catchup = *c;
    return s;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

std::optional<ScheduleState> scheduleStateFromJson(const Json& j) {
  try {
    ScheduleState s;
    s.cursor = j.at("cursor").get<int64_t>();
    if (auto it = j.find("last_slot"); it != j.end() && !it->is_null()) {
      s.last_slot = it->get<int64_t>();
    }
    s.last_task = j.value("last_task", std::string());
    s.fired = j.value("fired", int64_t{0});
    s.skipped = j.value("skipped", int64_t{0});
    return s;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

std::string firingTaskId(std::string_view schedule_id, int64_t slot) {
  return fmt::format("{}-{}", schedule_id, slot);
}

std::optional<tasks::TaskSpec> firingTask(const ScheduleSpec& spec, int64_t slot) {
  Json j = spec.task;
  if (!j.is_object()) return std::nullopt;
  j["id"] = firingTaskId(spec.id, slot);
  return tasks::specFromJson(j);
}

tl::expected<SlotTimes, std::string> SlotTimes::of(const ScheduleSpec& spec) {
  auto zone = base::CronZone::find(spec.timezone);
  if (!zone) return tl::unexpected(zone.error());
  if (spec.every_s > 0) return SlotTimes(std::nullopt, *zone, spec.every_s);
  auto cron = base::CronSchedule::parse(spec.cron);
  if (!cron) return tl::unexpected(cron.error());
  return SlotTimes(*cron, *zone, 0);
}

std::optional<int64_t> SlotTimes::next(int64_t after) const {
  if (every_s_ > 0) {
    // Slots are the multiples of every_s in Unix time, so every leader computes the same ones.
    int64_t q = after >= 0 ? after / every_s_ : -((-after + every_s_ - 1) / every_s_);
    return (q + 1) * every_s_;
  }
  auto t = cron_->next(base::UnixSeconds(std::chrono::seconds(after)), zone_);
  if (!t) return std::nullopt;
  return t->time_since_epoch().count();
}

std::string schedulesPath(const tasks::Layout& layout) { return layout.root() + "/schedules"; }

std::string schedulePath(const tasks::Layout& layout, std::string_view id) {
  return fmt::format("{}/{}", schedulesPath(layout), id);
}

std::string scheduleStatePath(const tasks::Layout& layout, std::string_view id) {
  return fmt::format("{}/{}/state", schedulesPath(layout), id);
}

std::vector<coord::Op> createScheduleOps(const tasks::Layout& layout, const ScheduleSpec& spec,
                                         int64_t now_s) {
  ScheduleState state;
  state.cursor = now_s;
  return {
      coord::CreateOp{
          schedulePath(layout, spec.id), toJson(spec).dump(), coord::CreateMode::kPersistent, {}},
      coord::CreateOp{scheduleStatePath(layout, spec.id),
                      toJson(state).dump(),
                      coord::CreateMode::kPersistent,
                      {}}};
}

std::vector<coord::Op> deleteScheduleOps(const tasks::Layout& layout, std::string_view id) {
  return {coord::DeleteOp{scheduleStatePath(layout, id)},
          coord::DeleteOp{schedulePath(layout, id)}};
}

}  // namespace drover::scheduler

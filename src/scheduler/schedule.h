#pragma once

// Cron schedules (docs/WORKFLOWS.md "Schedules", docs/ZNODES.md "Schedules"): the record a client
// writes at /schedules/{id}, the firing state beside it at /schedules/{id}/state, and when a
// schedule's slots fall. The REST API (api/schedule_store.h) writes both records; the leader's
// ScheduleFirer (schedule_firer.h) reads them and advances the state. Nothing here touches the
// tree or knows how tasks are stored.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

#include "base/cron.h"
#include "coord/coordination.h"
#include "tasks/layout.h"
#include "tasks/task.h"

namespace drover::scheduler {

enum class Overlap { kAllow, kSkip };
enum class Catchup { kNone, kOne, kAll };

// The most slots one catch-up fires with `catchup: all`: after a longer downtime the oldest
// missed slots are skipped (docs/WORKFLOWS.md).
inline constexpr int64_t kMaxCatchupSlots = 1000;
// The longest schedule id: `{id}-{slot}` must stay a valid task id (128 characters).
inline constexpr size_t kMaxScheduleIdLength = 100;
inline constexpr int64_t kMaxEverySeconds = 366LL * 24 * 3600;

// What a client asked for. Immutable once written: a second POST with the same id and an equal
// spec is a repeat, with another spec a conflict.
struct ScheduleSpec {
  std::string id;
  std::string cron;     // "" when every_s is set
  int64_t every_s = 0;  // 0 when cron is set
  std::string timezone = "UTC";
  tasks::Json task;  // the task's submission without its id (normalised by the API)
  Overlap overlap = Overlap::kAllow;
  Catchup catchup = Catchup::kNone;

  bool operator==(const ScheduleSpec&) const = default;
};

// The firing state (/schedules/{id}/state), written with a version check fenced by /epoch.
// Every slot at or before `cursor` is settled: fired, skipped or caught up past. A new schedule
// starts with cursor = its creation time, so it fires from its first slot after that.
struct ScheduleState {
  int64_t cursor = 0;
  std::optional<int64_t> last_slot;  // the last slot that submitted a task
  std::string last_task;             // its task id ("" if none yet)
  int64_t fired = 0;                 // slots that submitted a task
  int64_t skipped = 0;               // slots passed over (overlap skip, catchup none/one/bound)

  bool operator==(const ScheduleState&) const = default;
};

struct ScheduleError {
  std::string field;
  std::string detail;
};

// Reads a POST body ({"id", "cron" | "every_s", "timezone"?, "task", "overlap"?, "catchup"?}).
// `parse_task` checks the task (with the id a firing would give it) and returns its normalised
// JSON; its error names the field inside "task". Unknown fields are an error.
using TaskCheck =
    std::function<tl::expected<tasks::Json, tasks::ValidationError>(const tasks::Json& task)>;
tl::expected<ScheduleSpec, ScheduleError> parseSchedule(const tasks::Json& body,
                                                        const TaskCheck& parse_task);

tasks::Json toJson(const ScheduleSpec& spec);
tasks::Json toJson(const ScheduleState& state);
std::optional<ScheduleSpec> scheduleFromJson(const tasks::Json& j);
std::optional<ScheduleState> scheduleStateFromJson(const tasks::Json& j);
std::string_view overlapName(Overlap o);
std::string_view catchupName(Catchup c);

// The task id of one firing: `{schedule-id}-{slot}`.
std::string firingTaskId(std::string_view schedule_id, int64_t slot);
// The task a firing submits; nullopt if the stored task cannot be read.
std::optional<tasks::TaskSpec> firingTask(const ScheduleSpec& spec, int64_t slot);

// When a schedule's slots fall: a parsed spec. Cheap to copy, immutable, thread-safe.
class SlotTimes {
 public:
  // An error for a bad cron expression or zone (the spec came from the tree, so it was valid
  // when written; a later tz database may not know the zone).
  static tl::expected<SlotTimes, std::string> of(const ScheduleSpec& spec);
  // The first slot strictly after `after` (Unix seconds), or nullopt if there is none.
  std::optional<int64_t> next(int64_t after) const;

 private:
  SlotTimes(std::optional<base::CronSchedule> cron, base::CronZone zone, int64_t every_s)
      : cron_(std::move(cron)), zone_(std::move(zone)), every_s_(every_s) {}
  std::optional<base::CronSchedule> cron_;
  base::CronZone zone_;
  int64_t every_s_ = 0;
};

// The znodes: /schedules, /schedules/{id}, /schedules/{id}/state.
std::string schedulesPath(const tasks::Layout& layout);
std::string schedulePath(const tasks::Layout& layout, std::string_view id);
std::string scheduleStatePath(const tasks::Layout& layout, std::string_view id);

// The one multi that writes a new schedule: its record and its first state (cursor = `now_s`, so
// it fires from its first slot after its creation). Fails with kNodeExists if the id is taken.
std::vector<coord::Op> createScheduleOps(const tasks::Layout& layout, const ScheduleSpec& spec,
                                         int64_t now_s);
// The one multi that deletes a schedule (state, then record).
std::vector<coord::Op> deleteScheduleOps(const tasks::Layout& layout, std::string_view id);

}  // namespace drover::scheduler

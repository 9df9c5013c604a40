#pragma once

// The API's side of cron schedules (docs/WORKFLOWS.md "Schedules", docs/ZNODES.md "Schedules"):
// writes and reads /schedules/{id} and its firing state. The leader's ScheduleFirer
// (scheduler/schedule_firer.h) does the firing.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "api/problem.h"
#include "coord/coordination.h"
#include "scheduler/schedule.h"
#include "tasks/layout.h"

namespace drover::api {

struct ScheduleView {
  scheduler::ScheduleSpec spec;
  scheduler::ScheduleState state;
  std::optional<int64_t> next;  // the next slot after now and after the cursor (Unix seconds)
};

// Thread-safe: every method may be called from many HTTP threads; each blocks for at most
// about `call_timeout` per coordination call.
class ScheduleStore {
 public:
  ScheduleStore(coord::Coordination& coord, tasks::Layout layout,
                std::chrono::milliseconds call_timeout = std::chrono::seconds(10),
                std::function<int64_t()> now_ms = nullptr);

  struct Created {
    ScheduleView view;
    bool created = false;  // false: an equal schedule existed (an idempotent repeat)
  };
  // Writes the schedule and its first state in one multi. An existing id with an equal spec is
  // a repeat; with another spec kConflict (nothing written).
  StoreResult<Created> create(const scheduler::ScheduleSpec& spec);
  StoreResult<ScheduleView> get(const std::string& id);
  // Sorted by id.
  StoreResult<std::vector<ScheduleView>> list();
  // Deletes the schedule and its state in one multi; kNotFound if there is none. Tasks it
  // fired stay.
  StoreResult<void> remove(const std::string& id);

 private:
  template <class T>
  coord::Result<T> await(const coord::Future<T>& future) const {
    return awaitFor(future, call_timeout_);
  }
  int64_t nowS() const;
  std::optional<int64_t> nextOf(const scheduler::ScheduleSpec& spec,
                                const scheduler::ScheduleState& state) const;

  coord::Coordination& coord_;
  const tasks::Layout layout_;
  const std::chrono::milliseconds call_timeout_;
  const std::function<int64_t()> now_ms_;
};

}  // namespace drover::api

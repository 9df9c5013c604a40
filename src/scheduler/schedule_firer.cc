#include "scheduler/schedule_firer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <deque>

#include "coord/paths.h"

namespace drover::scheduler {

using coord::Code;

// Everything a watch or a timer may touch after the firer is gone: they hold this, and check
// `stopped` before touching the firer.
struct ScheduleFirer::Shared {
  std::mutex mu;
  bool stopped = false;
  base::Executor* executor = nullptr;
  std::atomic<int64_t> fired{0};
  std::atomic<int64_t> skipped{0};
  std::atomic<int64_t> retries{0};

  bool isStopped() {
    std::lock_guard lock(mu);
    return stopped;
  }
  // Runs `fn` on the executor unless stopped (now or by the time it runs).
  void post(std::function<void()> fn, const std::shared_ptr<Shared>& self) {
    std::lock_guard lock(mu);
    if (stopped || executor == nullptr) return;
    executor->post([self, fn = std::move(fn)] {
      if (!self->isStopped()) fn();
    });
  }
};

namespace {

template <class T>
coord::Result<T> await(const coord::Future<T>& f, std::chrono::milliseconds timeout) {
  auto r = f.waitFor(timeout);
  if (!r) return coord::fail(Code::kOperationTimeout, "no reply in time");
  return *r;
}

constexpr int64_t kRetryMs = 1000;

int64_t floorDiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

}  // namespace

ScheduleFirer::ScheduleFirer(coord::Coordination& coord, const tasks::Layout& layout, int32_t epoch,
                             base::Executor& executor, Callbacks callbacks, Options options)
    : coord_(coord),
      layout_(layout),
      epoch_(epoch),
      executor_(executor),
      callbacks_(std::move(callbacks)),
      options_(options),
      shared_(std::make_shared<Shared>()) {
  shared_->executor = &executor_;
}

ScheduleFirer::~ScheduleFirer() { stop(); }

void ScheduleFirer::start() {
  shared_->post([this] { pass(); }, shared_);
}

void ScheduleFirer::stop() {
  std::lock_guard lock(shared_->mu);
  shared_->stopped = true;
  shared_->executor = nullptr;
}

bool ScheduleFirer::running() const { return !shared_->isStopped(); }

ScheduleFirer::Stats ScheduleFirer::stats() const {
  return {shared_->fired.load(), shared_->skipped.load(), shared_->retries.load()};
}

void ScheduleFirer::arm(int64_t delay_ms) {
  if (armed_) executor_.cancel(timer_);
  auto shared = shared_;
  timer_ = executor_.postAfter(std::chrono::milliseconds(std::max<int64_t>(0, delay_ms)),
                               [shared, this] {
                                 if (shared->isStopped()) return;
                                 armed_ = false;
                                 pass();
                               });
  armed_ = true;
}

void ScheduleFirer::pass() {
  if (!running()) return;
  if (dirty_ && !reload()) {
    shared_->retries++;
    arm(kRetryMs);
    return;
  }
  bool retry_soon = false;
  const int64_t now_s = floorDiv(callbacks_.now_ms(), 1000);
  for (auto& [id, e] : entries_) {
    const int64_t retries = shared_->retries.load();
    if (!fireDue(e, now_s)) return;  // fenced or stopped
    if (shared_->retries.load() != retries) retry_soon = true;
  }
  const int64_t now_ms = callbacks_.now_ms();
  int64_t wake = now_ms + options_.max_wait.count();
  for (const auto& [id, e] : entries_) {
    if (!e.times) continue;
    if (auto n = e.times->next(e.state.cursor)) wake = std::min(wake, *n * 1000);
  }
  if (retry_soon || dirty_) wake = std::min(wake, now_ms + kRetryMs);
  arm(wake - now_ms);
}

bool ScheduleFirer::reload() {
  const std::string root = schedulesPath(layout_);
  auto shared = shared_;
  auto watcher = [shared, this](const coord::WatchEvent&) {
    shared->post(
        [this] {
          dirty_ = true;
          pass();
        },
        shared);
  };
  auto kids = await(coord_.children(root, watcher), options_.call_timeout);
  if (!kids && kids.error().code() == Code::kNoNode) {
    if (auto st = coord::ensurePath(coord_, root); !st) {
      spdlog::warn("schedules: cannot create {}: {}", root, st.error().toString());
      return false;
    }
    kids = await(coord_.children(root, watcher), options_.call_timeout);
  }
  if (!kids) {
    spdlog::warn("schedules: cannot list {}: {}", root, kids.error().toString());
    return false;
  }
  std::map<std::string, Entry> next;
  for (const auto& id : *kids) {
    Entry e;
    if (auto old = entries_.find(id); old != entries_.end()) {
      e.spec = old->second.spec;
      e.times = old->second.times;
    } else {
      auto node = await(coord_.get(schedulePath(layout_, id), nullptr), options_.call_timeout);
      if (!node && node.error().code() == Code::kNoNode) continue;  // deleted since the listing
      if (!node) return false;
      auto j = tasks::parseJson(node->data);
      auto spec = j ? scheduleFromJson(*j) : std::nullopt;
      if (!spec) {
        spdlog::error("schedules: {} is unreadable; not firing it", id);
        continue;
      }
      e.spec = std::move(*spec);
      auto times = SlotTimes::of(e.spec);
      if (!times) {
        spdlog::error("schedules: {} cannot be timed ({}); not firing it", id, times.error());
        continue;
      }
      e.times = *times;
    }
    auto st = await(coord_.get(scheduleStatePath(layout_, id), nullptr), options_.call_timeout);
    if (!st && st.error().code() == Code::kNoNode) continue;  // a delete under way
    if (!st) return false;
    auto j = tasks::parseJson(st->data);
    auto state = j ? scheduleStateFromJson(*j) : std::nullopt;
    if (!state) {
      spdlog::error("schedules: the state of {} is unreadable; not firing it", id);
      continue;
    }
    e.state = *state;
    e.version = st->stat.version;
    next.emplace(id, std::move(e));
  }
  entries_ = std::move(next);
  dirty_ = false;
  return true;
}

bool ScheduleFirer::fireDue(Entry& e, int64_t now_s) {
  if (!e.times) return true;
  auto first = e.times->next(e.state.cursor);
  if (!first || *first > now_s) return true;
  const size_t limit = e.spec.catchup == Catchup::kAll ? kMaxCatchupSlots : 1;
  // The due slots (cursor, now]: the newest `limit` of them, and how many older ones pass.
  std::deque<int64_t> due;
  int64_t passed = 0;
  if (e.spec.every_s > 0) {
    const int64_t latest = floorDiv(now_s, e.spec.every_s) * e.spec.every_s;
    const int64_t count = (latest - *first) / e.spec.every_s + 1;
    const int64_t keep = std::min<int64_t>(count, static_cast<int64_t>(limit));
    passed = count - keep;
    for (int64_t i = keep - 1; i >= 0; --i) due.push_back(latest - i * e.spec.every_s);
  } else {
    for (auto s = first; s && *s <= now_s; s = e.times->next(*s)) {
      due.push_back(*s);
      if (due.size() > limit) {
        due.pop_front();
        ++passed;
      }
    }
  }
  const int64_t latest = due.back();
  if (e.spec.catchup == Catchup::kNone && now_s - latest > options_.on_time.count()) {
    passed += static_cast<int64_t>(due.size());
    due.clear();
  }
  if (due.empty()) {
    ScheduleState next = e.state;
    next.cursor = latest;
    next.skipped += passed;
    switch (writeState(e, next)) {
      case Wrote::kOk:
        shared_->skipped += passed;
        return true;
      case Wrote::kReread:
        return true;
      case Wrote::kFenced:
        return false;
    }
  }
  for (int64_t slot : due) {
    if (!running()) return false;
    ScheduleState next = e.state;
    next.cursor = slot;
    next.skipped += passed;
    bool fire = true;
    if (e.spec.overlap == Overlap::kSkip && !e.state.last_task.empty()) {
      switch (callbacks_.progress(e.state.last_task)) {
        case Progress::kActive:
          fire = false;
          break;
        case Progress::kDone:
          break;
        case Progress::kUnknown:
          shared_->retries++;
          return true;
      }
    }
    if (fire) {
      auto task = firingTask(e.spec, slot);
      if (!task) {
        spdlog::error("schedules: the task of {} is unreadable; not firing it", e.spec.id);
        e.times.reset();
        return true;
      }
      switch (callbacks_.submit(*task)) {
        case Submitted::kSubmitted:
        case Submitted::kRepeat:
          next.fired++;
          next.last_slot = slot;
          next.last_task = task->id;
          break;
        case Submitted::kRefused:
          spdlog::warn(
              "schedules: task {} was refused (it exists with another spec, or the stored task is "
              "no longer accepted); slot skipped",
              task->id);
          fire = false;
          break;
        case Submitted::kRetry:
          shared_->retries++;
          return true;
      }
    }
    if (!fire) next.skipped++;
    const int64_t newly_skipped = next.skipped - e.state.skipped;
    switch (writeState(e, next)) {
      case Wrote::kOk:
        shared_->skipped += newly_skipped;
        if (fire) shared_->fired++;
        passed = 0;
        break;
      case Wrote::kReread:
        return true;
      case Wrote::kFenced:
        return false;
    }
  }
  return true;
}

ScheduleFirer::Wrote ScheduleFirer::writeState(Entry& e, const ScheduleState& next) {
  std::vector<coord::Op> ops{
      coord::CheckOp{layout_.epoch(), epoch_},
      coord::SetOp{scheduleStatePath(layout_, e.spec.id), toJson(next).dump(), e.version}};
  auto r = await(coord_.multi(std::move(ops)), options_.call_timeout);
  if (r) {
    e.state = next;
    e.version = (*r)[1].stat.version;
    return Wrote::kOk;
  }
  if (r.error().failedOp() == 0 || r.error().sessionLost()) {
    const std::string reason = r.error().failedOp() == 0 ? "epoch moved" : "session lost";
    spdlog::warn("schedules: firing state of {} not written: {}; stopping", e.spec.id, reason);
    stop();
    if (callbacks_.fenced) callbacks_.fenced(reason);
    return Wrote::kFenced;
  }
  // Ambiguous, or the state moved or went (a delete): re-read it before firing more. A slot
  // whose write was lost is fired again, and its submit is then a repeat.
  shared_->retries++;
  dirty_ = true;
  return Wrote::kReread;
}

}  // namespace drover::scheduler

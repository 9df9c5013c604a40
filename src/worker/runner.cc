#include "worker/runner.h"

#include <fmt/format.h>
#include <pthread.h>
#include <spdlog/spdlog.h>

namespace drover::worker {

Runner::Runner(int slots) : slots_(slots < 1 ? 1 : slots) {
  threads_.reserve(static_cast<size_t>(slots_));
  for (int i = 0; i < slots_; ++i) {
    threads_.emplace_back([this] { work(); });
    pthread_setname_np(threads_.back().native_handle(), fmt::format("run-{}", i).c_str());
  }
  watchdog_ = std::thread([this] { watchdog(); });
}

Runner::~Runner() { stop(); }

bool Runner::tryRun(TaskContext ctx, Handler handler, Completion done) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || static_cast<int>(active_.size()) >= slots_) return false;
    if (active_.count(ctx.id) != 0) return false;
    active_.emplace(ctx.id, Active{ctx.cancel, std::nullopt});
    queue_.push_back(Job{std::move(ctx), std::move(handler), std::move(done)});
  }
  work_cv_.notify_one();
  return true;
}

bool Runner::cancel(const std::string& task_id, CancelReason reason) {
  std::lock_guard lock(mu_);
  auto it = active_.find(task_id);
  if (it == active_.end()) return false;
  return it->second.token.cancel(reason);
}

int Runner::runningCount() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(active_.size());
}

bool Runner::running(const std::string& task_id) const {
  std::lock_guard lock(mu_);
  return active_.count(task_id) != 0;
}

uint64_t Runner::addSlotListener(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  uint64_t id = next_listener_++;
  slot_listeners_.emplace(id, std::move(fn));
  return id;
}

void Runner::removeSlotListener(uint64_t id) {
  std::lock_guard lock(mu_);
  slot_listeners_.erase(id);
}

void Runner::stop() {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      for (auto& [id, active] : active_) active.token.cancel(CancelReason::kShutdown);
    }
  }
  work_cv_.notify_all();
  dog_cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  if (watchdog_.joinable()) watchdog_.join();
}

void Runner::work() {
  while (true) {
    Job job;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) return;  // stopping, and nothing accepted is left
      job = std::move(queue_.front());
      queue_.erase(queue_.begin());
      if (job.ctx.timeout.count() > 0) {
        job.ctx.deadline = std::chrono::steady_clock::now() + job.ctx.timeout;
        active_[job.ctx.id].deadline = job.ctx.deadline;
      }
    }
    if (job.ctx.deadline) dog_cv_.notify_all();

    HandlerResult result;
    if (job.ctx.cancel.cancelled()) {
      result = HandlerResult::failure(std::string(cancelReasonName(job.ctx.cancel.reason())));
    } else {
      result = invokeHandler(job.handler, job.ctx);
    }
    if (job.ctx.cancel.reason() == CancelReason::kTimedOut) {
      double secs = static_cast<double>(job.ctx.timeout.count()) / 1000.0;
      result = HandlerResult::failure(fmt::format("timed out after {:g} s", secs),
                                      std::move(result.result));
    }

    {
      std::lock_guard lock(mu_);
      active_.erase(job.ctx.id);
    }
    if (job.done) {
      try {
        job.done(job.ctx.id, std::move(result));
      } catch (const std::exception& e) {
        spdlog::error("runner: completion of task {} threw: {}", job.ctx.id, e.what());
      }
    }
    std::vector<std::function<void()>> listeners;
    {
      std::lock_guard lock(mu_);
      for (const auto& [id, fn] : slot_listeners_) listeners.push_back(fn);
    }
    for (const auto& fn : listeners) fn();
  }
}

void Runner::watchdog() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    auto now = std::chrono::steady_clock::now();
    std::optional<base::TimePoint> next;
    for (auto& [id, active] : active_) {
      if (!active.deadline) continue;
      if (*active.deadline <= now) {
        active.token.cancel(CancelReason::kTimedOut);
        active.deadline.reset();
      } else if (!next || *active.deadline < *next) {
        next = active.deadline;
      }
    }
    if (next) {
      dog_cv_.wait_until(lock, *next);
    } else {
      dog_cv_.wait(lock);
    }
  }
}

}  // namespace drover::worker

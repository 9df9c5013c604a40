#include "api/store.h"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <future>
#include <random>
#include <set>
#include <thread>

#include "base/clock.h"
#include "base/ids.h"
#include "tasks/transitions.h"

namespace drover::api {
namespace {

using coord::Code;
using tasks::State;
using tasks::TaskSpec;
using tasks::TaskStatus;
using Clock = std::chrono::steady_clock;

}  // namespace

struct TaskStore::GroupEntry {
  tasks::TaskOps part;                                // the task's submit
  std::promise<std::optional<coord::Error>> outcome;  // nullopt: committed
};

// The queue of submits waiting for a group multi, and the multis in flight.
struct TaskStore::Group {
  Group(coord::Coordination& c, tasks::Layout l, size_t inflight, size_t tasks, size_t bytes)
      : coord(c),
        layout(std::move(l)),
        max_inflight(inflight),
        max_tasks(tasks),
        max_bytes(bytes) {}

  coord::Coordination& coord;
  const tasks::Layout layout;
  const size_t max_inflight;
  const size_t max_tasks;
  const size_t max_bytes;
  std::mutex mu;
  std::deque<std::shared_ptr<GroupEntry>> queue;
  size_t inflight = 0;

  // Under mu: the next group to send (empty if nothing waits).
  std::vector<std::shared_ptr<GroupEntry>> take() {
    std::vector<std::shared_ptr<GroupEntry>> out;
    size_t bytes = 0;
    while (!queue.empty() && out.size() < max_tasks &&
           (out.empty() || bytes + queue.front()->part.bytes <= max_bytes)) {
      bytes += queue.front()->part.bytes;
      out.push_back(std::move(queue.front()));
      queue.pop_front();
    }
    return out;
  }

  // One multi for the group: every task's status and job, and one event record. When it
  // completes, the next group (the submits that queued meanwhile) goes out from the completion.
  static void send(const std::shared_ptr<Group>& self,
                   std::vector<std::shared_ptr<GroupEntry>> entries) {
    tasks::Txn txn(self->layout);
    for (auto& e : entries) txn.add(std::move(e->part));
    self->coord.multi(std::move(txn).finish().ops)
        .then([self,
               entries = std::move(entries)](const coord::Result<std::vector<coord::OpResult>>& r) {
          std::optional<coord::Error> outcome;
          if (!r) outcome = r.error();
          for (const auto& e : entries) e->outcome.set_value(outcome);
          std::vector<std::shared_ptr<GroupEntry>> next;
          {
            std::lock_guard lock(self->mu);
            next = self->take();
            if (next.empty()) --self->inflight;
          }
          if (!next.empty()) send(self, std::move(next));
        });
  }
};

TaskStore::TaskStore(coord::Coordination& coord, tasks::Layout layout, StoreOptions options)
    : coord_(coord),
      layout_(std::move(layout)),
      options_(options),
      reader_(coord, layout_, options_),
      admission_(coord, layout_, options_),
      queues_(coord, layout_, options_.call_timeout),
      group_(std::make_shared<Group>(coord, layout_, options.group_inflight,
                                     std::max<size_t>(1, options.group_max_tasks),
                                     options.max_multi_bytes)) {}

size_t TaskStore::queuedSubmits() const {
  std::lock_guard lock(group_->mu);
  return group_->queue.size();
}

std::optional<coord::Error> TaskStore::groupCreate(const TaskStatus& status) {
  auto entry = std::make_shared<GroupEntry>();
  entry->part = tasks::submit(layout_, status);
  auto outcome = entry->outcome.get_future();
  std::vector<std::shared_ptr<GroupEntry>> send;
  {
    std::lock_guard lock(group_->mu);
    group_->queue.push_back(entry);
    if (group_->inflight < group_->max_inflight) {
      ++group_->inflight;
      send = group_->take();
    }
  }
  if (!send.empty()) Group::send(group_, std::move(send));
  // The multi always completes (the client times requests out), but bound the wait anyway.
  if (outcome.wait_for(options_.call_timeout) != std::future_status::ready) {
    return coord::Error(Code::kOperationTimeout, "no reply in time");
  }
  return outcome.get();
}

void TaskStore::pause(int attempt) const {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::this_thread::sleep_for(options_.backoff.delay(static_cast<uint32_t>(attempt), rng()));
}

StoreResult<SubmitResult> TaskStore::submit(const TaskSpec& spec) {
  if (!base::isValidName(spec.id)) return problem(Failure::kBadRequest, "invalid task id");
  if (!connected()) {
    return problem(Failure::kUnavailable, "not connected to ZooKeeper; try again later");
  }
  if (auto admitted = admission_.admit(1); !admitted) return tl::unexpected(admitted.error());
  const auto deadline = Clock::now() + options_.settle_deadline;
  // This request's creation identity: every attempt of this call writes the same submitted_at,
  // and every later writer of the status (leader, worker, cancel) carries it over. A status found
  // after an ambiguous write with an equal spec is this call's own write (202) if it carries this
  // stamp, else an earlier request's (200). Two requests for one id with equal specs in the same
  // millisecond, one of them ambiguous, could both answer 202; both answers still say the task
  // exists with that spec, which is what a client acts on.
  const int64_t stamp = base::wallMillis();
  auto ours = [&](const TaskStatus& found) { return found.submitted_at == stamp; };

  // After an ambiguous write: re-read (after a sync) until we know. The task's status, if the
  // write (or an earlier one of ours) was applied; nullopt if it was not (send it again).
  auto settle = [&]() -> StoreResult<std::optional<SubmitResult>> {
    for (int n = 1;; ++n) {
      if (Clock::now() >= deadline) {
        return problem(Failure::kUnavailable,
                       fmt::format("the outcome of submitting '{}' is unknown (ZooKeeper "
                                   "unreachable); retry with the same id",
                                   spec.id));
      }
      pause(n);
      auto synced = await(coord_.sync(layout_.status(spec.id)));
      if (!synced && synced.error().retryable()) continue;
      auto st = await(coord_.get(layout_.status(spec.id), nullptr));
      if (!st) {
        if (st.error().code() == Code::kNoNode) return std::optional<SubmitResult>{};
        if (!st.error().retryable()) return tl::unexpected(fromCoord(st.error(), "submit"));
        continue;
      }
      auto existing = decodeStatus(st->data);
      if (!existing) return problem(Failure::kInternal, "task is unreadable");
      if (existing->spec == spec) {
        SubmitResult found{std::move(*existing), false};
        found.created = ours(found.status);
        return std::optional<SubmitResult>(std::move(found));
      }
      return problem(Failure::kConflict,
                     fmt::format("task '{}' already exists with a different spec", spec.id));
    }
  };

  bool maybe_applied = false;  // an earlier attempt of ours may have committed
  if (options_.group_inflight > 0) {
    TaskStatus status;
    status.spec = spec;
    status.submitted_at = stamp;
    auto err = groupCreate(status);
    if (!err) return SubmitResult{std::move(status), true};
    if (err->outcomeUnknown()) {
      maybe_applied = true;
      auto settled = settle();
      if (!settled) return tl::unexpected(settled.error());
      if (*settled) return std::move(**settled);
    } else if (err->failedOp() < 0) {
      return tl::unexpected(fromCoord(*err, "submit"));  // the session's failure, not an op's
    }
    // Else one op of the group failed and nothing was applied: alone, the error is our own.
  }
  for (int attempt = 1;; ++attempt) {
    TaskStatus status;
    status.spec = spec;
    status.submitted_at = stamp;
    tasks::Txn txn(layout_);
    txn.add(tasks::submit(layout_, status));
    auto t = std::move(txn).finish();
    auto r = await(coord_.multi(std::move(t.ops)));
    if (r) return SubmitResult{std::move(status), true};
    const coord::Error& err = r.error();
    const auto failed = t.decoder.failed(err);

    if (err.code() == Code::kNodeExists && failed && failed->step == tasks::Step::kStatus) {
      auto existing = reader_.readStatus(spec.id);
      if (!existing) return tl::unexpected(existing.error());
      if (!*existing) {  // deleted in between (retention): try the create again
        if (Clock::now() >= deadline) {
          return problem(Failure::kUnavailable, "task kept changing under the submit");
        }
        pause(attempt);
        continue;
      }
      if ((*existing)->spec == spec) {
        // Ours only if an earlier attempt of this call may have landed and the stamp is ours.
        bool created = maybe_applied && ours(**existing);
        return SubmitResult{std::move(**existing), created};
      }
      return problem(Failure::kConflict,
                     fmt::format("task '{}' already exists with a different spec", spec.id));
    }
    if (err.code() == Code::kNodeExists) {
      return problem(Failure::kInternal, fmt::format("a job for '{}' exists without a status ({})",
                                                     spec.id, err.toString()));
    }
    if (err.code() == Code::kNoNode) {
      return problem(Failure::kUnavailable,
                     fmt::format("the drover tree under {} is not initialised", layout_.root()));
    }
    if (!err.outcomeUnknown()) return tl::unexpected(fromCoord(err, "submit"));

    // Ambiguous: the multi may have been applied.
    maybe_applied = true;
    auto settled = settle();
    if (!settled) return tl::unexpected(settled.error());
    if (*settled) return std::move(**settled);
    // Not applied: send the multi again.
  }
}

StoreResult<BatchResult> TaskStore::submitBatch(const std::vector<TaskSpec>& specs) {
  if (specs.empty()) return problem(Failure::kBadRequest, "the batch is empty");
  std::set<std::string> seen;
  std::vector<std::string> ids;
  for (const auto& spec : specs) {
    if (!base::isValidName(spec.id)) return problem(Failure::kBadRequest, "invalid task id");
    if (!seen.insert(spec.id).second) {
      return problem(Failure::kBadRequest, fmt::format("task id '{}' appears twice", spec.id));
    }
    ids.push_back(spec.id);
  }
  if (!connected()) {
    return problem(Failure::kUnavailable, "not connected to ZooKeeper; try again later");
  }
  if (auto admitted = admission_.admit(specs.size()); !admitted)
    return tl::unexpected(admitted.error());

  // This call's creation identity, written into every status of the batch by every attempt
  // (see submit()): a batch found whole after an ambiguous write is this call's (202) only if
  // every status carries it, else an earlier request's (200). The multi is all or nothing, so
  // the statuses of one batch are either all this call's or none.
  const int64_t stamp = base::wallMillis();

  // Classifies the existing statuses after a NodeExists or an ambiguous write.
  auto classify = [&](const std::vector<std::optional<TaskStatus>>& found, bool maybe_applied,
                      bool& retry) -> StoreResult<BatchResult> {
    std::vector<std::string> differ, present;
    size_t absent = 0;
    bool all_ours = maybe_applied;
    for (size_t i = 0; i < specs.size(); ++i) {
      if (!found[i]) {
        ++absent;
      } else if (found[i]->spec == specs[i]) {
        present.push_back(specs[i].id);
        all_ours = all_ours && found[i]->submitted_at == stamp;
      } else {
        differ.push_back(specs[i].id);
      }
    }
    auto names = [](const std::vector<std::string>& v) {
      std::string s;
      for (size_t i = 0; i < v.size() && i < 10; ++i) s += (i ? ", " : "") + v[i];
      if (v.size() > 10) s += fmt::format(" and {} more", v.size() - 10);
      return s;
    };
    if (!differ.empty()) {
      return problem(Failure::kConflict,
                     fmt::format("tasks exist with a different spec: {}", names(differ)));
    }
    if (absent == specs.size()) {
      retry = true;
      return BatchResult{};
    }
    if (absent == 0) return BatchResult{ids, all_ours};
    return problem(Failure::kConflict,
                   fmt::format("some tasks of the batch exist already ({}); a batch is all or "
                               "nothing: submit the others separately",
                               names(present)));
  };

  const auto deadline = Clock::now() + options_.settle_deadline;
  bool maybe_applied = false;
  for (int attempt = 1;; ++attempt) {
    tasks::Txn txn(layout_);
    for (const auto& spec : specs) {
      TaskStatus status;
      status.spec = spec;
      status.submitted_at = stamp;
      txn.add(tasks::submit(layout_, status));
    }
    const size_t bytes = txn.bytes();
    if (bytes > options_.max_multi_bytes) {
      return problem(Failure::kTooLarge,
                     fmt::format("the batch encodes to {} bytes; one transaction carries at most "
                                 "{}: split it",
                                 bytes, options_.max_multi_bytes));
    }
    auto t = std::move(txn).finish();
    auto r = await(coord_.multi(std::move(t.ops)));
    if (r) return BatchResult{ids, true};
    const coord::Error& err = r.error();
    const auto failed = t.decoder.failed(err);
    if (err.code() == Code::kNodeExists && failed && failed->step == tasks::Step::kJob) {
      return problem(Failure::kInternal,
                     fmt::format("a job exists without a status ({})", err.toString()));
    }
    if (err.code() == Code::kNoNode) {
      return problem(Failure::kUnavailable,
                     fmt::format("the drover tree under {} is not initialised", layout_.root()));
    }
    if (err.code() != Code::kNodeExists && !err.outcomeUnknown()) {
      return tl::unexpected(fromCoord(err, "submit batch"));
    }
    if (err.outcomeUnknown()) maybe_applied = true;
    bool retry = false;
    for (int n = 1; !retry; ++n) {
      if (err.outcomeUnknown()) {
        if (Clock::now() >= deadline) {
          return problem(Failure::kUnavailable,
                         "the outcome of the batch is unknown (ZooKeeper unreachable); retry "
                         "it unchanged");
        }
        pause(n);
        auto synced = await(coord_.sync(layout_.statuses()));
        if (!synced && synced.error().retryable()) continue;
      }
      auto found = reader_.readStatuses(ids);
      if (!found) {
        if (err.outcomeUnknown() && found.error().failure == Failure::kUnavailable) continue;
        return tl::unexpected(found.error());
      }
      auto verdict = classify(*found, maybe_applied, retry);
      if (!retry) return verdict;
    }
    if (Clock::now() >= deadline) {
      return problem(Failure::kUnavailable, "tasks kept changing under the batch submit");
    }
    pause(attempt);
  }
}

StoreResult<CancelResult> TaskStore::cancel(const std::string& id) {
  if (!base::isValidName(id)) return problem(Failure::kBadRequest, "invalid task id");
  const auto deadline = Clock::now() + options_.settle_deadline;
  for (int attempt = 1; attempt <= options_.cancel_attempts; ++attempt) {
    auto read = reader_.readStatus(id);
    if (!read) return tl::unexpected(read.error());
    if (!*read) return problem(Failure::kNotFound, fmt::format("no task '{}'", id));
    TaskStatus status = std::move(**read);
    if (tasks::isTerminal(status.state)) return CancelResult{std::move(status), true};
    if (!connected()) {
      return problem(Failure::kUnavailable, "not connected to ZooKeeper; try again later");
    }

    TaskStatus cancelled = status;
    cancelled.state = State::kCancelled;
    cancelled.finished_at = base::wallMillis();
    if (status.state != State::kPending && !base::isValidName(status.worker)) {
      return problem(Failure::kInternal, fmt::format("task '{}' is {} without a valid worker", id,
                                                     tasks::stateName(status.state)));
    }
    tasks::Txn txn(layout_);
    txn.add(tasks::cancel(layout_, status, cancelled));
    auto t = std::move(txn).finish();
    auto r = await(coord_.multi(std::move(t.ops)));
    if (r) return CancelResult{std::move(cancelled), false};
    const coord::Error& err = r.error();
    const auto failed = t.decoder.failed(err);
    if (err.code() == Code::kNoNode && failed && failed->step == tasks::Step::kToken) {
      pause(attempt);  // the token moved (assigned, requeued, finished): read again
      continue;
    }
    if (!err.outcomeUnknown()) return tl::unexpected(fromCoord(err, "cancel"));
    // Ambiguous: the re-read at the top of the loop tells (cancelled -> done, as terminal).
    while (Clock::now() < deadline) {
      pause(attempt);
      auto synced = await(coord_.sync(layout_.status(id)));
      if (synced || !synced.error().retryable()) break;
    }
    if (Clock::now() >= deadline) {
      return problem(Failure::kUnavailable,
                     fmt::format("the outcome of cancelling '{}' is unknown (ZooKeeper "
                                 "unreachable); retry",
                                 id));
    }
    auto after = reader_.readStatus(id);
    if (after && *after && (*after)->state == State::kCancelled) {
      return CancelResult{std::move(**after), false};
    }
  }
  return problem(Failure::kUnavailable,
                 fmt::format("task '{}' kept changing; cancel did not settle, retry", id));
}

}  // namespace drover::api

#include "api/store.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <future>
#include <random>
#include <set>
#include <thread>

#include "base/clock.h"
#include "base/ids.h"
#include "coord/paths.h"

namespace drover::api {
namespace {

using coord::Code;
using tasks::Json;
using tasks::State;
using tasks::TaskEvent;
using tasks::TaskSpec;
using tasks::TaskStatus;
using Clock = std::chrono::steady_clock;

tl::unexpected<Problem> problem(Failure failure, std::string detail) {
  return tl::unexpected(Problem{failure, std::move(detail)});
}

// Never throws on odd bytes (invalid UTF-8 is replaced).
std::string dumpJson(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// What a coordination error means for a client of the API.
Problem fromCoord(const coord::Error& error, std::string_view what) {
  switch (error.code()) {
    case Code::kConnectionLoss:
    case Code::kOperationTimeout:
    case Code::kSessionExpired:
    case Code::kSessionMoved:
    case Code::kClosing:
      return {Failure::kUnavailable,
              fmt::format("{}: ZooKeeper is unavailable ({})", what, error.toString())};
    case Code::kBadArguments:
      return {Failure::kTooLarge,
              fmt::format("{}: rejected by ZooKeeper ({})", what, error.toString())};
    default:
      return {Failure::kInternal, fmt::format("{}: {}", what, error.toString())};
  }
}

size_t opSize(const coord::Op& op) {
  constexpr size_t kOpOverhead = 32;  // header, lengths, version, flags, ACL
  return std::visit(
      [](const auto& o) {
        size_t n = o.path.size() + kOpOverhead;
        if constexpr (requires { o.data; }) n += o.data.size();
        return n;
      },
      op);
}

std::optional<TaskStatus> decodeStatus(const std::string& data) {
  auto j = tasks::parseJson(data);
  if (!j) return std::nullopt;
  return tasks::statusFromJson(*j);
}

std::map<State, size_t> zeroCounts() {
  std::map<State, size_t> counts;
  for (State s : {State::kPending, State::kAssigned, State::kRunning, State::kSucceeded,
                  State::kFailed, State::kCancelled}) {
    counts[s] = 0;
  }
  return counts;
}

}  // namespace

struct TaskStore::GroupEntry {
  std::vector<coord::Op> ops;  // the status and job creates
  tasks::TaskEvent event;
  size_t bytes = 0;
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
           (out.empty() || bytes + queue.front()->bytes <= max_bytes)) {
      bytes += queue.front()->bytes;
      out.push_back(std::move(queue.front()));
      queue.pop_front();
    }
    return out;
  }

  // One multi for the group: every task's status and job, and one event record. When it
  // completes, the next group (the submits that queued meanwhile) goes out from the completion.
  static void send(const std::shared_ptr<Group>& self,
                   std::vector<std::shared_ptr<GroupEntry>> entries) {
    std::vector<coord::Op> ops;
    std::vector<tasks::TaskEvent> events;
    for (auto& e : entries) {
      for (const auto& op : e->ops) ops.push_back(op);
      events.push_back(e->event);
    }
    ops.push_back(tasks::eventOp(self->layout, events));
    self->coord.multi(std::move(ops))
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
      group_(std::make_shared<Group>(coord, layout_, options.group_inflight,
                                     std::max<size_t>(1, options.group_max_tasks),
                                     options.max_multi_bytes)) {}

size_t TaskStore::queuedSubmits() const {
  std::lock_guard lock(group_->mu);
  return group_->queue.size();
}

std::vector<coord::Op> TaskStore::submitOps(const TaskStatus& status) const {
  const TaskSpec& spec = status.spec;
  return {coord::CreateOp{layout_.status(spec.id),
                          dumpJson(tasks::toJson(status)),
                          coord::CreateMode::kPersistent,
                          {}},
          coord::CreateOp{layout_.job(spec.id),
                          dumpJson(tasks::toJson(tasks::Job{spec, 1, 0, status.submitted_at})),
                          coord::CreateMode::kPersistent,
                          {}}};
}

std::optional<coord::Error> TaskStore::groupCreate(const TaskStatus& status) {
  const TaskSpec& spec = status.spec;
  auto entry = std::make_shared<GroupEntry>();
  entry->ops = submitOps(status);
  entry->event = TaskEvent{spec.id, State::kPending, 0, "", status.submitted_at};
  for (const auto& op : entry->ops) entry->bytes += opSize(op);
  entry->bytes += 64;  // its share of the event record
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

template <class T>
coord::Result<T> TaskStore::await(const coord::Future<T>& future) const {
  auto r = future.waitFor(options_.call_timeout);
  if (!r) return coord::fail(Code::kOperationTimeout, "no reply in time");
  return *r;
}

void TaskStore::pause(int attempt) const {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::this_thread::sleep_for(options_.backoff.delay(static_cast<uint32_t>(attempt), rng()));
}

StoreResult<std::optional<TaskStatus>> TaskStore::readStatus(const std::string& id) {
  auto r = await(coord_.get(layout_.status(id), nullptr));
  if (!r) {
    if (r.error().code() == Code::kNoNode) return std::optional<TaskStatus>();
    return tl::unexpected(fromCoord(r.error(), fmt::format("reading task '{}'", id)));
  }
  auto status = decodeStatus(r->data);
  if (!status) return problem(Failure::kInternal, fmt::format("task '{}' is unreadable", id));
  return status;
}

StoreResult<std::vector<std::optional<TaskStatus>>> TaskStore::readStatuses(
    const std::vector<std::string>& ids) {
  std::vector<std::optional<TaskStatus>> out;
  out.reserve(ids.size());
  for (size_t start = 0; start < ids.size(); start += options_.pipeline) {
    size_t end = std::min(ids.size(), start + options_.pipeline);
    std::vector<coord::Future<coord::Node>> futures;
    for (size_t i = start; i < end; ++i)
      futures.push_back(coord_.get(layout_.status(ids[i]), nullptr));
    for (size_t i = start; i < end; ++i) {
      auto r = await(futures[i - start]);
      if (!r) {
        if (r.error().code() == Code::kNoNode) {
          out.emplace_back();
          continue;
        }
        return tl::unexpected(fromCoord(r.error(), fmt::format("reading task '{}'", ids[i])));
      }
      auto status = decodeStatus(r->data);
      if (!status) {
        return problem(Failure::kInternal, fmt::format("task '{}' is unreadable", ids[i]));
      }
      out.push_back(std::move(status));
    }
  }
  return out;
}

std::optional<size_t> TaskStore::countPending() {
  std::vector<coord::Future<std::optional<coord::Stat>>> buckets;
  buckets.reserve(tasks::Layout::kJobBuckets);
  for (int b = 0; b < tasks::Layout::kJobBuckets; ++b) {
    buckets.push_back(coord_.exists(layout_.jobBucketAt(b), nullptr));
  }
  size_t pending = 0;
  for (auto& f : buckets) {
    auto stat = await(f);
    if (!stat) return std::nullopt;
    if (*stat) pending += static_cast<size_t>(std::max(0, (*stat)->num_children));
  }
  return pending;
}

// How stale the estimate may be, and why that is fine: it is the count read at most
// pending_ttl ago (1 s by default) plus every task this store admitted since, so it misses only
// what other nodes accepted in that window (and errs high by what workers took meanwhile, and by
// admitted submits that then wrote nothing). The cap is flood control, not a quota: passing it
// by one second of the cluster's accepted submits, or refusing a little early for a second, is
// harmless, while an exact count would cost a listing of /jobs per submit. A read costs 256 stat
// reads per refresh per submitting node, whatever the backlog.
StoreResult<void> TaskStore::admit(size_t tasks) {
  if (options_.max_pending == 0) return {};
  auto fresh = [&] {
    std::lock_guard lock(pending_mu_);
    return pending_read_at_ && Clock::now() - *pending_read_at_ < options_.pending_ttl;
  };
  if (!fresh()) {
    bool have_count = false;
    {
      std::lock_guard lock(pending_mu_);
      have_count = pending_read_at_.has_value();
    }
    // One thread reads at a time. While another reads, go on with the old count; with no count
    // yet, wait for that read.
    std::unique_lock refresh(pending_refresh_mu_, std::defer_lock);
    if (have_count) {
      (void)refresh.try_lock();
    } else {
      refresh.lock();
    }
    if (refresh.owns_lock() && !fresh()) {
      auto read_at = Clock::now();
      if (auto count = countPending()) {
        std::lock_guard lock(pending_mu_);
        pending_read_ = *count;
        pending_added_ = 0;
        pending_read_at_ = read_at;
      }
      // A failed read keeps the old count; with none, the submit goes on (it answers 503 itself
      // if ZooKeeper is gone).
    }
  }
  std::lock_guard lock(pending_mu_);
  if (!pending_read_at_) return {};
  size_t pending = pending_read_ + pending_added_;
  if (pending + tasks > options_.max_pending) {
    return problem(Failure::kTooMany,
                   fmt::format("{} tasks are pending, the cap is {}{}: retry later", pending,
                               options_.max_pending,
                               tasks > 1 ? fmt::format(" and the batch holds {}", tasks) : ""));
  }
  pending_added_ += tasks;
  return {};
}

StoreResult<SubmitResult> TaskStore::submit(const TaskSpec& spec) {
  if (!base::isValidName(spec.id)) return problem(Failure::kBadRequest, "invalid task id");
  if (!connected()) {
    return problem(Failure::kUnavailable, "not connected to ZooKeeper; try again later");
  }
  if (auto admitted = admit(1); !admitted) return tl::unexpected(admitted.error());
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
    std::vector<coord::Op> ops = submitOps(status);
    ops.push_back(
        tasks::eventOp(layout_, {TaskEvent{spec.id, State::kPending, 0, "", status.submitted_at}}));
    auto r = await(coord_.multi(std::move(ops)));
    if (r) return SubmitResult{std::move(status), true};
    const coord::Error& err = r.error();

    if (err.code() == Code::kNodeExists && err.failedOp() == 0) {
      auto existing = readStatus(spec.id);
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
  if (auto admitted = admit(specs.size()); !admitted) return tl::unexpected(admitted.error());

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
    const int64_t now = stamp;
    std::vector<coord::Op> ops;
    std::vector<TaskEvent> events;
    ops.reserve(specs.size() * 2 + 1);
    for (const auto& spec : specs) {
      TaskStatus status;
      status.spec = spec;
      status.submitted_at = now;
      for (auto& op : submitOps(status)) ops.push_back(std::move(op));
      events.push_back(TaskEvent{spec.id, State::kPending, 0, "", now});
    }
    ops.push_back(tasks::eventOp(layout_, events));
    size_t bytes = 64;
    for (const auto& op : ops) bytes += opSize(op);
    if (bytes > options_.max_multi_bytes) {
      return problem(Failure::kTooLarge,
                     fmt::format("the batch encodes to {} bytes; one transaction carries at most "
                                 "{}: split it",
                                 bytes, options_.max_multi_bytes));
    }
    auto r = await(coord_.multi(std::move(ops)));
    if (r) return BatchResult{ids, true};
    const coord::Error& err = r.error();
    if (err.code() == Code::kNodeExists && err.failedOp() >= 0 && err.failedOp() % 2 == 1 &&
        err.failedOp() < static_cast<int>(specs.size() * 2)) {
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
      auto found = readStatuses(ids);
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

StoreResult<TaskStatus> TaskStore::get(const std::string& id) {
  if (!base::isValidName(id)) return problem(Failure::kBadRequest, "invalid task id");
  auto r = readStatus(id);
  if (!r) return tl::unexpected(r.error());
  if (!*r) return problem(Failure::kNotFound, fmt::format("no task '{}'", id));
  return std::move(**r);
}

StoreResult<TaskStatus> TaskStore::wait(const std::string& id, std::chrono::milliseconds timeout) {
  if (!base::isValidName(id)) return problem(Failure::kBadRequest, "invalid task id");
  auto signal = std::make_shared<WaitSignal>();
  {
    std::lock_guard lock(waits_mu_);
    waits_.insert(signal);
  }
  struct Unregister {
    TaskStore* self;
    std::shared_ptr<WaitSignal> signal;
    ~Unregister() {
      std::lock_guard lock(self->waits_mu_);
      self->waits_.erase(signal);
    }
  } unregister{this, signal};
  const auto deadline = Clock::now() + timeout;
  std::optional<TaskStatus> last;
  for (int failures = 0;;) {
    {
      std::lock_guard lock(signal->mu);
      signal->fired = false;
    }
    // The watch may fire long after this call returned: it holds only the shared signal.
    coord::Watcher watcher = [signal](const coord::WatchEvent&) {
      std::lock_guard lock(signal->mu);
      signal->fired = true;
      signal->cv.notify_all();
    };
    auto r = await(coord_.get(layout_.status(id), watcher));
    if (!r) {
      if (r.error().code() == Code::kNoNode) {
        return problem(Failure::kNotFound, fmt::format("no task '{}'", id));
      }
      if (!r.error().retryable() || Clock::now() >= deadline) {
        if (last) return std::move(*last);
        return tl::unexpected(fromCoord(r.error(), fmt::format("reading task '{}'", id)));
      }
      // Not connected: wait for the connection (bounded by the deadline), then read again.
      auto delay = options_.backoff.delay(static_cast<uint32_t>(++failures));
      std::this_thread::sleep_until(std::min(deadline, Clock::now() + delay));
      continue;
    }
    failures = 0;
    last = decodeStatus(r->data);
    if (!last) return problem(Failure::kInternal, fmt::format("task '{}' is unreadable", id));
    if (tasks::isTerminal(last->state) || interrupted_) return std::move(*last);
    std::unique_lock lock(signal->mu);
    if (!signal->cv.wait_until(lock, deadline, [&] { return signal->fired || interrupted_; }) ||
        interrupted_) {
      return std::move(*last);
    }
  }
}

void TaskStore::interruptWaits() {
  interrupted_ = true;
  std::lock_guard lock(waits_mu_);
  for (const auto& w : waits_) {
    std::lock_guard wl(w->mu);
    w->cv.notify_all();
  }
}

StoreResult<CancelResult> TaskStore::cancel(const std::string& id) {
  if (!base::isValidName(id)) return problem(Failure::kBadRequest, "invalid task id");
  const auto deadline = Clock::now() + options_.settle_deadline;
  for (int attempt = 1; attempt <= options_.cancel_attempts; ++attempt) {
    auto read = readStatus(id);
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
    std::vector<coord::Op> ops;
    if (status.state == State::kPending) {
      ops.push_back(coord::DeleteOp{layout_.job(id), coord::kAnyVersion});
    } else {
      if (!base::isValidName(status.worker)) {
        return problem(Failure::kInternal, fmt::format("task '{}' is {} without a valid worker", id,
                                                       tasks::stateName(status.state)));
      }
      ops.push_back(coord::DeleteOp{layout_.assignment(status.worker, id), coord::kAnyVersion});
    }
    ops.push_back(
        coord::SetOp{layout_.status(id), dumpJson(tasks::toJson(cancelled)), coord::kAnyVersion});
    ops.push_back(tasks::eventOp(layout_, {TaskEvent{id, State::kCancelled, status.attempts,
                                                     status.worker, cancelled.finished_at}}));
    auto r = await(coord_.multi(std::move(ops)));
    if (r) return CancelResult{std::move(cancelled), false};
    const coord::Error& err = r.error();
    if (err.code() == Code::kNoNode && err.failedOp() == 0) {
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
    auto after = readStatus(id);
    if (after && *after && (*after)->state == State::kCancelled) {
      return CancelResult{std::move(**after), false};
    }
  }
  return problem(Failure::kUnavailable,
                 fmt::format("task '{}' kept changing; cancel did not settle, retry", id));
}

StoreResult<std::vector<std::string>> TaskStore::statusIds(const char* what) {
  // 256 listings in flight at once; each reply stays small (a bucket holds ~1/256 of the ids).
  std::vector<coord::Future<std::vector<std::string>>> buckets;
  buckets.reserve(tasks::Layout::kJobBuckets);
  for (int b = 0; b < tasks::Layout::kJobBuckets; ++b) {
    buckets.push_back(coord_.children(layout_.statusBucketAt(b), nullptr));
  }
  std::vector<std::string> ids;
  for (auto& f : buckets) {
    auto kids = await(f);
    if (!kids) {
      if (kids.error().code() == Code::kNoNode) continue;  // a tree not (fully) initialised
      return tl::unexpected(fromCoord(kids.error(), what));
    }
    for (auto& id : *kids) ids.push_back(std::move(id));
  }
  return ids;
}

StoreResult<TaskPage> TaskStore::list(std::optional<State> state, size_t limit,
                                      const std::string& cursor) {
  auto kids = statusIds("listing tasks");
  if (!kids) return tl::unexpected(kids.error());
  std::vector<std::string> names = std::move(*kids);
  std::sort(names.begin(), names.end());
  auto it = cursor.empty() ? names.begin() : std::upper_bound(names.begin(), names.end(), cursor);
  TaskPage page;
  while (it != names.end() && page.tasks.size() < limit) {
    auto end = it + static_cast<ptrdiff_t>(
                        std::min<size_t>(options_.pipeline, static_cast<size_t>(names.end() - it)));
    std::vector<std::string> chunk(it, end);
    auto found = readStatuses(chunk);
    if (!found) return tl::unexpected(found.error());
    for (size_t i = 0; i < chunk.size(); ++i, ++it) {
      if (page.tasks.size() == limit) break;
      auto& st = (*found)[i];
      if (!st || (state && st->state != *state)) continue;
      page.tasks.push_back(std::move(*st));
    }
  }
  if (page.tasks.size() == limit && it != names.end()) page.next = page.tasks.back().spec.id;
  return page;
}

StoreResult<TaskPage> TaskStore::listNewest(std::optional<State> state, size_t limit,
                                            const std::optional<NewestCursor>& after) {
  auto kids = statusIds("listing tasks");
  if (!kids) return tl::unexpected(kids.error());
  using Key = std::pair<int64_t, std::string>;  // (czxid, id), listed in descending order
  std::vector<Key> order;
  order.reserve(kids->size());
  for (size_t start = 0; start < kids->size(); start += options_.pipeline) {
    size_t end = std::min(kids->size(), start + options_.pipeline);
    std::vector<coord::Future<std::optional<coord::Stat>>> stats;
    for (size_t i = start; i < end; ++i) {
      stats.push_back(coord_.exists(layout_.status((*kids)[i]), nullptr));
    }
    for (size_t i = start; i < end; ++i) {
      auto r = await(stats[i - start]);
      if (!r) return tl::unexpected(fromCoord(r.error(), "listing tasks"));
      if (*r) order.emplace_back((*r)->czxid, std::move((*kids)[i]));  // absent: just deleted
    }
  }
  std::sort(order.begin(), order.end(), std::greater<>());
  auto it = order.begin();
  if (after) {
    it = std::upper_bound(order.begin(), order.end(), Key(after->czxid, after->id),
                          std::greater<>());
  }
  TaskPage page;
  Key last;
  while (it != order.end() && page.tasks.size() < limit) {
    size_t n = std::min<size_t>(options_.pipeline, static_cast<size_t>(order.end() - it));
    std::vector<std::string> chunk;
    for (size_t i = 0; i < n; ++i) chunk.push_back(it[static_cast<ptrdiff_t>(i)].second);
    auto found = readStatuses(chunk);
    if (!found) return tl::unexpected(found.error());
    for (size_t i = 0; i < chunk.size(); ++i, ++it) {
      if (page.tasks.size() == limit) break;
      auto& st = (*found)[i];
      if (!st || (state && st->state != *state)) continue;
      page.tasks.push_back(std::move(*st));
      last = *it;
    }
  }
  if (page.tasks.size() == limit && it != order.end()) {
    page.next = fmt::format("{}-{}", last.first, last.second);
  }
  return page;
}

StoreResult<std::optional<LeaderInfo>> TaskStore::readLeader() {
  auto r = await(coord_.get(layout_.leader(), nullptr));
  if (!r) {
    if (r.error().code() == Code::kNoNode) return std::optional<LeaderInfo>();
    return tl::unexpected(fromCoord(r.error(), "reading the leader"));
  }
  auto j = tasks::parseJson(r->data);
  if (!j || !j->is_object() || !j->contains("id") || !(*j)["id"].is_string()) {
    return std::optional<LeaderInfo>();
  }
  LeaderInfo info;
  info.id = (*j)["id"].get<std::string>();
  if (auto e = j->find("epoch"); e != j->end() && e->is_number_integer()) {
    info.epoch = e->get<int64_t>();
  }
  return std::optional<LeaderInfo>(std::move(info));
}

StoreResult<WorkersView> TaskStore::workers() {
  auto kids = await(coord_.children(layout_.workers(), nullptr));
  if (!kids) return tl::unexpected(fromCoord(kids.error(), "listing workers"));
  std::vector<std::string> names = std::move(*kids);
  std::sort(names.begin(), names.end());
  auto leader = readLeader();
  if (!leader) return tl::unexpected(leader.error());

  std::vector<coord::Future<coord::Node>> infos;
  std::vector<coord::Future<std::vector<std::string>>> running;
  for (const auto& w : names) {
    infos.push_back(coord_.get(layout_.worker(w), nullptr));
    running.push_back(coord_.children(layout_.assignmentsOf(w), nullptr));
  }
  WorkersView out;
  out.leader = *leader;
  for (size_t i = 0; i < names.size(); ++i) {
    auto info = await(infos[i]);
    auto assigned = await(running[i]);
    if (!info) {
      if (info.error().code() == Code::kNoNode) continue;  // left meanwhile
      return tl::unexpected(fromCoord(info.error(), "reading workers"));
    }
    WorkerView view;
    auto j = tasks::parseJson(info->data);
    auto decoded = j ? tasks::workerFromJson(*j) : std::nullopt;
    if (decoded) {
      view.info = std::move(*decoded);
    } else {
      view.info.id = names[i];  // unreadable registration: still list it
    }
    view.assigned = assigned ? assigned->size() : 0;
    view.running = std::min(view.assigned, static_cast<size_t>(std::max(0, view.info.slots)));
    view.leader = *leader && (*leader)->id == view.info.id;
    out.workers.push_back(std::move(view));
  }
  return out;
}

StoreResult<std::map<State, size_t>> TaskStore::countTasks() {
  {
    std::lock_guard lock(counts_mu_);
    if (counts_cache_ && Clock::now() - counts_cache_->first < options_.counts_ttl) {
      return counts_cache_->second;
    }
  }
  auto kids = statusIds("counting tasks");
  if (!kids) return tl::unexpected(kids.error());
  auto counts = zeroCounts();
  for (size_t start = 0; start < kids->size(); start += options_.pipeline) {
    size_t end = std::min(kids->size(), start + options_.pipeline);
    std::vector<coord::Future<coord::Node>> futures;
    for (size_t i = start; i < end; ++i) {
      futures.push_back(coord_.get(layout_.status((*kids)[i]), nullptr));
    }
    for (auto& f : futures) {
      auto r = await(f);
      if (!r) {
        if (r.error().code() == Code::kNoNode) continue;
        return tl::unexpected(fromCoord(r.error(), "counting tasks"));
      }
      auto j = tasks::parseJson(r->data);
      if (!j || !j->is_object() || !j->contains("state") || !(*j)["state"].is_string()) continue;
      if (auto s = tasks::parseState((*j)["state"].get<std::string>())) ++counts[*s];
    }
  }
  std::lock_guard lock(counts_mu_);
  counts_cache_.emplace(Clock::now(), counts);
  return counts;
}

StoreResult<ClusterView> TaskStore::cluster() {
  ClusterView view;
  view.session = coord_.session();
  auto leader = readLeader();
  if (!leader) return tl::unexpected(leader.error());
  view.leader = std::move(*leader);
  auto kids = await(coord_.children(layout_.workers(), nullptr));
  if (!kids) return tl::unexpected(fromCoord(kids.error(), "listing workers"));
  view.workers = kids->size();
  auto counts = countTasks();
  if (!counts) return tl::unexpected(counts.error());
  view.counts = std::move(*counts);
  return view;
}

// --- Subscription ---

std::optional<TaskEvent> Subscription::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !queue_.empty() || closed_; });
  if (queue_.empty()) return std::nullopt;
  TaskEvent e = std::move(queue_.front());
  queue_.pop_front();
  return e;
}

bool Subscription::closed() const {
  std::lock_guard lock(mu_);
  return closed_;
}

bool Subscription::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

void Subscription::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

void Subscription::push(const TaskEvent& event) {
  if (!id_filter_.empty() && event.id != id_filter_) return;
  std::lock_guard lock(mu_);
  if (closed_) return;
  if (queue_.size() >= capacity_) {
    // Too slow: drop it rather than block the feed or grow without bound.
    dropped_ = true;
    closed_ = true;
    queue_.clear();
  } else {
    queue_.push_back(event);
  }
  cv_.notify_all();
}

// --- EventFeed ---

EventFeed::EventFeed(coord::Coordination& coord, tasks::Layout layout, EventFeedOptions options)
    : coord_(coord), layout_(std::move(layout)), options_(options) {}

EventFeed::~EventFeed() { stop(); }

void EventFeed::start() {
  {
    std::lock_guard lock(anchor_->mu);
    anchor_->feed = this;
  }
  std::weak_ptr<Anchor> anchor = anchor_;
  listener_ = coord_.addSessionListener([anchor](const coord::SessionEvent& e) {
    auto a = anchor.lock();
    if (!a || e.state != coord::SessionState::kConnected) return;
    std::lock_guard lock(a->mu);
    if (a->feed == nullptr) return;
    EventFeed* feed = a->feed;
    feed->executor_.post([feed, generation = e.generation] {
      // A new session lost the old one's watches: arm again. A reconnect of the same session
      // keeps them; refresh anyway to pick up what happened meanwhile.
      if (generation != feed->generation_) feed->watch_armed_ = false;
      feed->generation_ = generation;
      feed->refresh();
    });
  });
  generation_ = coord_.session().generation;
}

void EventFeed::stop() {
  {
    std::lock_guard lock(anchor_->mu);
    anchor_->feed = nullptr;
  }
  std::vector<std::weak_ptr<Subscription>> subs;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    subs.swap(subscribers_);
    listing_cv_.notify_all();
  }
  if (listener_ != 0) coord_.removeSessionListener(listener_);
  executor_.stop();
  for (auto& w : subs) {
    if (auto s = w.lock()) s->close();
  }
}

std::shared_ptr<Subscription> EventFeed::subscribe(std::string id_filter) {
  auto sub = std::make_shared<Subscription>(std::move(id_filter), options_.queue_capacity);
  std::unique_lock lock(mu_);
  if (stopped_) {
    sub->close();
    return sub;
  }
  subscribers_.push_back(sub);
  if (initialized_) return sub;
  // Idle (or still taking its first listing): wake it and wait for a listing, so that what the
  // caller does next is seen.
  uint64_t seen = listings_;
  executor_.post([this] { refresh(); });
  listing_cv_.wait_for(lock, options_.call_timeout,
                       [&] { return stopped_ || (initialized_ && listings_ != seen); });
  return sub;
}

bool EventFeed::anyoneListening() {
  std::lock_guard lock(mu_);
  std::erase_if(subscribers_, [](const std::weak_ptr<Subscription>& w) {
    auto s = w.lock();
    return !s || s->closed();
  });
  if (subscribers_.empty()) initialized_ = false;  // idle: the next subscriber starts afresh
  return !subscribers_.empty();
}

void EventFeed::wake() {
  if (wake_pending_) return;
  auto due = last_refresh_ + options_.min_interval;
  auto now = std::chrono::steady_clock::now();
  if (now >= due) {
    refresh();
    return;
  }
  wake_pending_ = true;
  executor_.postAfter(std::chrono::duration_cast<base::Duration>(due - now), [this] {
    wake_pending_ = false;
    refresh();
  });
}

size_t EventFeed::subscribers() {
  std::lock_guard lock(mu_);
  std::erase_if(subscribers_, [](const std::weak_ptr<Subscription>& w) {
    auto s = w.lock();
    return !s || s->closed();
  });
  return subscribers_.size();
}

void EventFeed::scheduleRetry() {
  if (retry_pending_) return;
  retry_pending_ = true;
  ++failures_;
  executor_.postAfter(options_.retry.delay(failures_, std::random_device{}()), [this] {
    retry_pending_ = false;
    refresh();
  });
}

void EventFeed::refresh() {
  // Nobody listens: take no listing and arm no watch (one already armed fires once more, and
  // ends here too).
  if (!anyoneListening()) return;
  last_refresh_ = std::chrono::steady_clock::now();
  coord::Watcher watcher;
  if (!watch_armed_) {
    std::weak_ptr<Anchor> anchor = anchor_;
    watcher = [anchor](const coord::WatchEvent&) {
      auto a = anchor.lock();
      if (!a) return;
      std::lock_guard lock(a->mu);
      if (a->feed == nullptr) return;
      EventFeed* feed = a->feed;
      feed->executor_.post([feed] {
        feed->watch_armed_ = false;
        feed->wake();
      });
    };
  }
  auto kids = coord_.children(layout_.events(), watcher).waitFor(options_.call_timeout);
  if (!kids || !*kids) {
    if (kids) spdlog::debug("event feed: listing events failed: {}", kids->error().toString());
    scheduleRetry();
    return;
  }
  if (watcher) watch_armed_ = true;
  failures_ = 0;

  std::vector<std::pair<int64_t, std::string>> records;
  for (const auto& name : **kids) {
    int64_t seq = coord::sequenceOf(name);
    if (seq >= 0) records.emplace_back(seq, name);
  }
  std::sort(records.begin(), records.end());
  if (!initialized_) {
    // The first listing since the feed was idle: deliver what comes after it (no replay).
    last_seen_ = records.empty() ? -1 : records.back().first;
    std::lock_guard lock(mu_);
    initialized_ = true;
    ++listings_;
    listing_cv_.notify_all();
    return;
  }
  std::erase_if(records, [&](const auto& r) { return r.first <= last_seen_.load(); });
  std::vector<coord::Future<coord::Node>> futures;
  futures.reserve(records.size());
  for (const auto& r : records)
    futures.push_back(coord_.get(coord::join(layout_.events(), r.second), nullptr));
  for (size_t i = 0; i < records.size(); ++i) {
    auto node = futures[i].waitFor(options_.call_timeout);
    if (!node || (!*node && (*node).error().code() != Code::kNoNode)) {
      scheduleRetry();  // read the rest later; last_seen_ stays at the last one delivered
      return;
    }
    if (*node) {
      std::vector<TaskEvent> events;
      auto j = tasks::parseJson((*node)->data);
      if (j && j->is_array()) {
        for (const auto& item : *j) {
          if (auto e = tasks::eventFromJson(item)) events.push_back(std::move(*e));
        }
      }
      dispatch(events);
    }  // else: trimmed before we read it
    last_seen_ = records[i].first;
  }
}

void EventFeed::dispatch(const std::vector<TaskEvent>& events) {
  if (events.empty()) return;
  std::lock_guard lock(mu_);
  std::erase_if(subscribers_, [&](const std::weak_ptr<Subscription>& w) {
    auto s = w.lock();
    if (!s) return true;
    for (const auto& e : events) s->push(e);
    return s->closed();
  });
}

}  // namespace drover::api

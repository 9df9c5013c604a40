#include "tasks/transitions.h"

#include <utility>
#include <variant>

namespace drover::tasks {

namespace {

constexpr size_t kOpFraming = 32;    // per-op header on the wire, roughly
constexpr size_t kEventFraming = 8;  // per event in the record: brackets and commas

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// Appends one op and its role.
void push(TaskOps& part, coord::Op op, Step step) {
  part.bytes += opBytes(op);
  part.ops.push_back(std::move(op));
  part.steps.push_back(step);
}

// `event` flagged when it ends a task that has a callback_url (the webhook dispatcher delivers
// only flagged events, so it reads no status for tasks without one).
TaskEvent marked(TaskEvent event, const TaskStatus& written) {
  event.callback = isTerminal(event.state) && !written.spec.callback_url.empty();
  return event;
}

void report(TaskOps& part, TaskEvent event) {
  part.bytes += toJson(event).dump().size() + kEventFraming;
  part.event = std::move(event);
}

coord::Op statusWrite(const Layout& layout, const TaskStatus& status, bool exists) {
  if (exists) {
    return coord::SetOp{layout.status(status.spec.id), encodeStatus(status), coord::kAnyVersion};
  }
  return coord::CreateOp{
      layout.status(status.spec.id), encodeStatus(status), coord::CreateMode::kPersistent, {}};
}

coord::Op jobCreate(const Layout& layout, const Job& job) {
  return coord::CreateOp{
      layout.job(job.spec.id), dump(toJson(job)), coord::CreateMode::kPersistent, {}};
}

}  // namespace

std::string_view stepName(Step step) {
  switch (step) {
    case Step::kEpoch:
      return "epoch";
    case Step::kToken:
      return "token";
    case Step::kStatus:
      return "status";
    case Step::kJob:
      return "job";
    case Step::kAssignment:
      return "assignment";
    case Step::kEvent:
      return "event";
    case Step::kRetained:
      return "retained status";
  }
  return "?";
}

std::string encodeStatus(const TaskStatus& status) {
  std::string data = dump(toJson(status));
  if (data.size() <= kMaxStatusBytes) return data;
  TaskStatus small = status;
  small.result = Json{{"truncated", true}, {"note", "the result was too large to record"}};
  if (small.error.size() > 4096) small.error.resize(4096);
  return dump(toJson(small));
}

size_t opBytes(const coord::Op& op) {
  return std::visit(
      [](const auto& o) -> size_t {
        if constexpr (requires { o.data; }) {
          return o.path.size() + o.data.size() + kOpFraming;
        } else {
          return o.path.size() + kOpFraming;
        }
      },
      op);
}

TaskOps submit(const Layout& layout, const TaskStatus& pending, int64_t not_before) {
  TaskOps part;
  part.id = pending.spec.id;
  push(part, statusWrite(layout, pending, false), Step::kStatus);
  push(part, jobCreate(layout, Job{pending.spec, 1, not_before, pending.submitted_at}), Step::kJob);
  report(part, TaskEvent{pending.spec.id, State::kPending, 0, "", pending.submitted_at});
  return part;
}

TaskOps assign(const Layout& layout, const Job& job, int32_t job_version, std::string_view worker,
               int64_t now) {
  const std::string& id = job.spec.id;
  TaskOps part;
  part.id = id;
  TaskStatus status;
  status.spec = job.spec;
  status.state = State::kAssigned;
  status.attempts = job.attempt;
  status.worker = std::string(worker);
  status.error = job.error;
  status.submitted_at = job.submitted_at;
  status.result = nullptr;
  push(part, coord::DeleteOp{layout.job(id), job_version}, Step::kToken);
  push(part,
       coord::CreateOp{layout.assignment(worker, id),
                       dump(toJson(Assignment{job.spec, job.attempt, job.submitted_at, job.error})),
                       coord::CreateMode::kPersistent,
                       {}},
       Step::kAssignment);
  push(part, statusWrite(layout, status, true), Step::kStatus);
  report(part, TaskEvent{id, State::kAssigned, job.attempt, std::string(worker), now});
  return part;
}

TaskOps start(const Layout& layout, std::string_view worker, int32_t version,
              const TaskStatus& running, bool status_exists) {
  const std::string& id = running.spec.id;
  TaskOps part;
  part.id = id;
  push(part, coord::CheckOp{layout.assignment(worker, id), version}, Step::kToken);
  push(part, statusWrite(layout, running, status_exists), Step::kStatus);
  report(part,
         TaskEvent{id, State::kRunning, running.attempts, std::string(worker), running.started_at});
  return part;
}

TaskOps commit(const Layout& layout, std::string_view worker, int32_t version,
               const TaskStatus& target, const std::optional<Job>& retry, bool status_exists,
               int64_t now) {
  const std::string& id = target.spec.id;
  TaskOps part;
  part.id = id;
  push(part, coord::DeleteOp{layout.assignment(worker, id), version}, Step::kToken);
  if (retry) push(part, jobCreate(layout, *retry), Step::kJob);
  push(part, statusWrite(layout, target, status_exists), Step::kStatus);
  report(part,
         marked(TaskEvent{id, target.state, target.attempts, std::string(worker), now}, target));
  return part;
}

TaskOps requeue(const Layout& layout, std::string_view worker, std::string_view id, int32_t version,
                const std::optional<TaskStatus>& next, const std::optional<Job>& retry,
                int64_t now) {
  TaskOps part;
  part.id = std::string(id);
  push(part, coord::DeleteOp{layout.assignment(worker, id), version}, Step::kToken);
  if (!next) return part;  // a finished task's leftover: only the token goes
  if (retry) push(part, jobCreate(layout, *retry), Step::kJob);
  push(part, statusWrite(layout, *next, true), Step::kStatus);
  report(part,
         marked(TaskEvent{std::string(id), next->state, next->attempts, next->worker, now}, *next));
  return part;
}

TaskOps cancel(const Layout& layout, const TaskStatus& current, const TaskStatus& cancelled) {
  const std::string& id = current.spec.id;
  TaskOps part;
  part.id = id;
  if (current.state == State::kPending) {
    push(part, coord::DeleteOp{layout.job(id), coord::kAnyVersion}, Step::kToken);
  } else {
    push(part, coord::DeleteOp{layout.assignment(current.worker, id), coord::kAnyVersion},
         Step::kToken);
  }
  push(part, statusWrite(layout, cancelled, true), Step::kStatus);
  report(part, marked(TaskEvent{id, State::kCancelled, current.attempts, current.worker,
                                cancelled.finished_at},
                      cancelled));
  return part;
}

TaskOps expire(const Layout& layout, std::string_view id, int32_t version) {
  TaskOps part;
  part.id = std::string(id);
  push(part, coord::DeleteOp{layout.status(id), version}, Step::kRetained);
  return part;
}

std::optional<FailedStep> Decoder::failed(const coord::Error& error) const {
  int k = error.failedOp();
  if (k < 0 || static_cast<size_t>(k) >= slots_.size()) return std::nullopt;
  return FailedStep{slots_[k].step, slots_[k].task};
}

Txn::Txn(const Layout& layout) : layout_(&layout) {}

Txn Txn::fenced(const Layout& layout, int32_t epoch) {
  Txn txn(layout);
  coord::Op check = coord::CheckOp{layout.epoch(), epoch};
  txn.bytes_ += opBytes(check);
  txn.ops_.push_back(std::move(check));
  txn.decoder_.slots_.push_back({Step::kEpoch, 0});
  return txn;
}

bool Txn::fits(const TaskOps& part, size_t max_tasks, size_t max_bytes) const {
  if (empty()) return true;
  return tasks() < max_tasks && bytes_ + part.bytes <= max_bytes;
}

size_t Txn::add(TaskOps part) {
  const auto index = static_cast<uint32_t>(ids_.size());
  if (part.event && events_.empty()) bytes_ += layout_->events().size() + 3 + kOpFraming;
  bytes_ += part.bytes;
  for (size_t i = 0; i < part.ops.size(); ++i) {
    ops_.push_back(std::move(part.ops[i]));
    decoder_.slots_.push_back({part.steps[i], index});
  }
  if (part.event) events_.push_back(std::move(*part.event));
  ids_.push_back(std::move(part.id));
  return index;
}

Transaction Txn::finish() && {
  if (!events_.empty()) {
    ops_.emplace_back(eventOp(*layout_, events_));
    decoder_.slots_.push_back({Step::kEvent, 0});
  }
  return Transaction{std::move(ops_), std::move(decoder_), std::move(ids_)};
}

}  // namespace drover::tasks

#include "worker/agent.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <future>

#include "base/clock.h"
#include "base/metrics.h"
#include "tasks/records.h"
#include "tasks/transitions.h"
#include "worker/completion_metrics.h"

namespace drover::worker {
namespace {

using coord::Code;
using tasks::State;

// Non-retryable, unexpected commit errors are tried this many times before giving up.
constexpr uint32_t kMaxOddRetries = 5;

// A failure of the task's token op (moved or consumed): the write is fenced.
bool isFence(const coord::Error& e, const std::optional<tasks::FailedStep>& failed) {
  return failed && failed->step == tasks::Step::kToken &&
         (e.code() == Code::kNoNode || e.code() == Code::kBadVersion);
}

}  // namespace

bool WorkerAgent::Shared::post(base::Task task) {
  std::lock_guard lock(mu);
  if (executor == nullptr) return false;
  executor->post(std::move(task));
  return true;
}

bool WorkerAgent::Shared::postAfter(base::Duration delay, base::Task task) {
  std::lock_guard lock(mu);
  if (executor == nullptr) return false;
  executor->postAfter(delay, std::move(task));
  return true;
}

WorkerAgent::WorkerAgent(coord::Coordination& coord, tasks::Layout layout, std::string worker_id,
                         Runner& runner, const HandlerRegistry& handlers, AgentOptions options)
    : coord_(coord),
      layout_(std::move(layout)),
      worker_id_(std::move(worker_id)),
      runner_(runner),
      handlers_(handlers),
      options_(options),
      shared_(std::make_shared<Shared>()),
      executor_("worker-agent") {
  shared_->executor = &executor_;
}

WorkerAgent::~WorkerAgent() { stop(); }

void WorkerAgent::start() {
  if (started_.exchange(true) || stopped_) return;
  coord::SessionEvent now = coord_.session();
  // The session the agent works for: the current one, or, if the handle has none yet, the first
  // one it connects. Any other session (after an expiry) means this worker id is dead.
  shared_->generation = now.state == coord::SessionState::kConnecting ? 0 : now.generation;
  auto shared = shared_;
  listener_id_ = coord_.addSessionListener([this, shared](const coord::SessionEvent& e) {
    uint64_t mine = 0;
    if (e.state == coord::SessionState::kConnected) {
      shared->generation.compare_exchange_strong(mine, e.generation);  // adopt the first one
    }
    mine = shared->generation.load();
    bool lost = e.state == coord::SessionState::kExpired ||
                e.state == coord::SessionState::kClosed ||
                (mine != 0 && e.generation != 0 && e.generation != mine);
    if (!lost || shared->dead.exchange(true)) return;
    shared->post([this] { becomeDead("session lost"); });
  });
  listener_added_ = true;
  // A task that found every Runner slot taken (slots may be shared with other users) is launched
  // as soon as any run frees one: no polling.
  slot_listener_id_ = runner_.addSlotListener([this, shared] {
    shared->post([this] {
      if (!waiting_.empty()) launchWaiting();
    });
  });
  if (now.state == coord::SessionState::kExpired || now.state == coord::SessionState::kClosed) {
    shared_->dead = true;
  }
  shared_->post([this] { list(); });
}

void WorkerAgent::stop() {
  if (stopped_.exchange(true)) return;
  std::promise<void> cancelled;
  auto done = cancelled.get_future();
  if (shared_->post([this, &cancelled] {
        stopping_ = true;
        for (auto& [id, item] : items_) {
          if (item.phase == Phase::kRunning) runner_.cancel(id, CancelReason::kShutdown);
        }
        cancelled.set_value();
      })) {
    done.wait();
  }
  {
    std::unique_lock lock(shared_->mu);
    shared_->runs_cv.wait(lock, [&] { return shared_->runs == 0; });
  }
  if (listener_added_) {
    coord_.removeSessionListener(listener_id_);
    runner_.removeSlotListener(slot_listener_id_);
  }
  {
    std::lock_guard lock(shared_->mu);
    shared_->executor = nullptr;
  }
  executor_.stop();
}

bool WorkerAgent::dead() const { return shared_->dead.load(); }

AgentStats WorkerAgent::stats() const {
  std::lock_guard lock(stats_mu_);
  return stats_;
}

void WorkerAgent::bump(uint64_t AgentStats::*counter) {
  std::lock_guard lock(stats_mu_);
  ++(stats_.*counter);
}

WorkerAgent::Item* WorkerAgent::find(const std::string& id) {
  auto it = items_.find(id);
  return it == items_.end() ? nullptr : &it->second;
}

void WorkerAgent::becomeDead(const std::string& why) {
  shared_->dead = true;
  spdlog::warn("worker {}: agent is dead ({}); cancelling {} task(s)", worker_id_, why,
               items_.size());
  for (auto& [id, item] : items_) {
    if (item.phase == Phase::kRunning) runner_.cancel(id, CancelReason::kShutdown);
  }
  items_.clear();
  waiting_.clear();
  ready_.clear();
  queued_.clear();
  starts_.clear();
  std::lock_guard lock(stats_mu_);
  stats_.running = 0;
}

bool WorkerAgent::sessionGone(const coord::Error& e) {
  if (e.sessionLost() || e.code() == Code::kClosing) {
    if (!shared_->dead) becomeDead(e.toString());
    return true;
  }
  return false;
}

void WorkerAgent::retryLater(Item& item, base::Task task) {
  ++item.tries;
  shared_->postAfter(options_.zk_backoff.delay(item.tries), std::move(task));
}

// --- Watching the assignments ---

void WorkerAgent::list() {
  if (halted()) return;
  bool arm = !watch_armed_;
  coord::Watcher watcher;
  if (arm) {
    watch_armed_ = true;
    auto shared = shared_;
    watcher = [this, shared](const coord::WatchEvent&) {
      shared->post([this] {
        watch_armed_ = false;
        list();
      });
    };
  }
  auto shared = shared_;
  coord_.children(layout_.assignmentsOf(worker_id_), std::move(watcher))
      .then([this, shared, arm](const coord::Result<std::vector<std::string>>& r) {
        shared->post([this, r, arm] { onListed(r, arm); });
      });
}

void WorkerAgent::onListed(const coord::Result<std::vector<std::string>>& r, bool armed) {
  if (halted()) return;
  if (!r) {
    if (armed) watch_armed_ = false;  // a failed read sets no watch
    if (sessionGone(r.error())) return;
    if (r.error().code() == Code::kNoNode) {
      becomeDead("its assignment folder is gone");
      return;
    }
    ++list_tries_;
    spdlog::warn("worker {}: listing assignments failed: {}", worker_id_, r.error().toString());
    shared_->postAfter(options_.zk_backoff.delay(list_tries_), [this] { list(); });
    return;
  }
  list_tries_ = 0;
  listed_ = std::set<std::string>(r->begin(), r->end());
  for (const auto& name : listed_) {
    if (items_.count(name) != 0) continue;
    Item& item = items_[name];
    item.id = name;
    fetch(name);
  }
  std::vector<std::string> gone;
  for (auto& [id, item] : items_) {
    if (listed_.count(id) == 0 && !item.gone) gone.push_back(id);
  }
  for (const auto& id : gone) markGone(items_.at(id));
}

void WorkerAgent::markGone(Item& item) {
  item.gone = true;
  switch (item.phase) {
    case Phase::kRunning:
      spdlog::info("worker {}: assignment {} vanished; cancelling its run", worker_id_, item.id);
      runner_.cancel(item.id, CancelReason::kCancelled);
      break;
    case Phase::kWaiting: {
      std::string id = item.id;
      std::erase(waiting_, id);
      bump(&AgentStats::dropped);
      finish(id);
      break;
    }
    case Phase::kQueued: {
      std::string id = item.id;
      queued_.erase({-item.assignment->spec.priority, item.czxid, id});
      bump(&AgentStats::dropped);
      finish(id);
      break;
    }
    default:
      break;  // the step in flight learns it and drops the item; a commit was ours
  }
}

void WorkerAgent::fetch(const std::string& id) {
  if (halted()) return;
  auto shared = shared_;
  coord_.get(layout_.assignment(worker_id_, id), nullptr)
      .then([this, shared, id](const coord::Result<coord::Node>& r) {
        shared->post([this, id, r] { onFetched(id, r); });
      });
}

void WorkerAgent::onFetched(const std::string& id, const coord::Result<coord::Node>& r) {
  if (halted()) return;
  Item* item = find(id);
  if (item == nullptr) return;
  if (!r) {
    if (sessionGone(r.error())) return;
    if (r.error().code() == Code::kNoNode) {
      finish(id);  // gone before we saw it: someone else consumed it
      return;
    }
    if (r.error().retryable()) {
      retryLater(*item, [this, id] { fetch(id); });
      return;
    }
    spdlog::error("worker {}: cannot read assignment {}: {}", worker_id_, id, r.error().toString());
    finish(id);
    return;
  }
  item->tries = 0;
  item->version = r->stat.version;
  item->czxid = r->stat.czxid;
  auto json = tasks::parseJson(r->data);
  if (json) item->assignment = tasks::assignmentFromJson(*json);
  if (!item->assignment) {
    item->reject = "undecodable assignment";
  } else if (item->assignment->spec.id != id) {
    item->reject = fmt::format("assignment names task '{}'", item->assignment->spec.id);
  } else if (!handlers_.has(item->assignment->spec.type)) {
    item->reject = fmt::format("unknown task type '{}'", item->assignment->spec.type);
  }
  if (item->reject.empty() && item->assignment->has_status) {
    // The assignment carries what the running status keeps from the assigned one: start now,
    // without reading /status/{id} (the start multi's check on the token fences it as before).
    const tasks::Assignment& a = *item->assignment;
    tasks::TaskStatus status;
    status.spec = a.spec;
    status.state = State::kAssigned;
    status.attempts = a.attempt;
    status.worker = worker_id_;
    status.error = a.error;
    status.submitted_at = a.submitted_at;
    item->status = std::move(status);
    item->status_exists = true;
    if (item->gone) {
      bump(&AgentStats::dropped);
      finish(id);
      return;
    }
    admit(id);
    return;
  }
  readStatus(id);
}

void WorkerAgent::readStatus(const std::string& id) {
  if (halted()) return;
  auto shared = shared_;
  coord_.get(layout_.status(id), nullptr)
      .then([this, shared, id](const coord::Result<coord::Node>& r) {
        shared->post([this, id, r] { onStatus(id, r); });
      });
}

void WorkerAgent::onStatus(const std::string& id, const coord::Result<coord::Node>& r) {
  if (halted()) return;
  Item* item = find(id);
  if (item == nullptr) return;
  if (item->gone) {
    bump(&AgentStats::dropped);
    finish(id);
    return;
  }
  if (!r && r.error().code() != Code::kNoNode) {
    if (sessionGone(r.error())) return;
    if (r.error().retryable()) {
      retryLater(*item, [this, id] { readStatus(id); });
      return;
    }
    spdlog::error("worker {}: cannot read status of {}: {}", worker_id_, id, r.error().toString());
    finish(id);
    return;
  }
  item->tries = 0;
  if (r) {
    auto json = tasks::parseJson(r->data);
    if (json) item->status = tasks::statusFromJson(*json);
  } else {
    item->status_exists = false;  // broken tree; we recreate it with the outcome
  }
  if (!item->status) {
    if (!item->assignment) {
      spdlog::error("worker {}: task {} has neither a readable assignment nor a status; leaving it",
                    worker_id_, id);
      finish(id);
      return;
    }
    item->status = tasks::TaskStatus{};
    item->status->spec = item->assignment->spec;
  }
  if (!item->assignment) {
    item->assignment = tasks::Assignment{item->status->spec, std::max(1, item->status->attempts)};
  }
  if (!item->reject.empty()) {
    spdlog::warn("worker {}: task {} fails without running: {}", worker_id_, id, item->reject);
    prepareCommit(*item, HandlerResult::failure(item->reject));
    item->outcome = Outcome::kFailed;  // never retried: no worker would know better
    item->retry_job.reset();
    item->target.state = State::kFailed;
    item->target.finished_at = base::wallMillis();
    bump(&AgentStats::rejected);
    queueCommit(id);
    return;
  }
  admit(id);
}

// --- Start and run ---

int WorkerAgent::slotsClaimed() const {
  int n = 0;
  for (const auto& [id, item] : items_) {
    if (item.phase == Phase::kStarting || item.phase == Phase::kWaiting ||
        item.phase == Phase::kRunning) {
      ++n;
    }
  }
  return n;
}

void WorkerAgent::admit(const std::string& id) {
  Item& item = items_.at(id);
  if (slotsClaimed() < runner_.slots()) {
    if (options_.mark_running_after.count() > 0) {
      launch(id);  // `running` is written later, if it still runs then
    } else {
      startRun(id);
    }
    return;
  }
  item.phase = Phase::kQueued;
  queued_.insert({-item.assignment->spec.priority, item.czxid, id});
}

void WorkerAgent::startQueued() {
  if (halted()) return;
  while (!queued_.empty() && slotsClaimed() < runner_.slots()) {
    std::string id = std::get<2>(*queued_.begin());
    queued_.erase(queued_.begin());
    Item* item = find(id);
    if (item == nullptr || item->phase != Phase::kQueued) continue;
    if (options_.mark_running_after.count() > 0) {
      launch(id);
    } else {
      startRun(id);
    }
  }
}

// Writes `running`: before the launch (phase kStarting; the launch waits for it), or for a task
// already launched (phase kRunning; see mark_running_after).
void WorkerAgent::startRun(const std::string& id) {
  if (halted()) return;
  Item& item = items_.at(id);
  if (item.phase != Phase::kRunning) item.phase = Phase::kStarting;
  item.running_sent = true;
  tasks::TaskStatus running = *item.status;
  running.state = State::kRunning;
  running.attempts = item.assignment->attempt;
  running.worker = worker_id_;
  running.result = nullptr;
  running.started_at = item.started_at > 0 ? item.started_at : base::wallMillis();
  running.finished_at = 0;
  starts_.emplace_back(id, std::move(running));
  flushSoon(starts_posted_, &WorkerAgent::flushStarts);
}

void WorkerAgent::flushSoon(bool& posted, void (WorkerAgent::*flush)()) {
  if (posted) return;
  posted = true;
  shared_->post([this, &posted, flush] {
    posted = false;
    (this->*flush)();
  });
}

// The starts queued in one executor turn go out together: per task a check of its token and
// its running status, then one event record for the batch. A batch that fails is re-sent task by
// task (one fenced task must not hold back the others), or re-read where its outcome is unknown.
void WorkerAgent::flushStarts() {
  if (halted()) return;
  std::vector<std::pair<std::string, tasks::TaskStatus>> starts;
  starts.swap(starts_);
  size_t i = 0;
  while (i < starts.size()) {
    std::vector<std::pair<std::string, tasks::TaskStatus>> batch;
    tasks::Txn txn(layout_);
    for (; i < starts.size(); ++i) {
      Item* item = find(starts[i].first);
      if (item == nullptr || (item->phase != Phase::kStarting && item->phase != Phase::kRunning)) {
        continue;  // gone, or its run already ended (the commit records the outcome)
      }
      auto part = startPart(*item, starts[i].second);
      if (!txn.fits(part, options_.max_batch, options_.max_batch_bytes)) break;
      txn.add(std::move(part));
      batch.push_back(std::move(starts[i]));
    }
    if (batch.empty()) continue;
    if (batch.size() == 1) {
      startOne(batch[0].first, batch[0].second);
      continue;
    }
    sendBatch(std::move(txn), [this, batch](const MultiResult& r) {
      for (const auto& [id, running] : batch) {
        if (find(id) == nullptr) continue;
        if (r) {
          onStarted(id, running, std::vector<coord::OpResult>{}, std::nullopt);
        } else if (sessionGone(r.error())) {
          return;
        } else if (r.error().outcomeUnknown()) {
          verifyStart(id, running);
        } else {
          startOne(id, running);
        }
      }
    });
  }
}

void WorkerAgent::sendBatch(tasks::Txn txn, std::function<void(const MultiResult&)> done) {
  auto shared = shared_;
  coord_.multi(std::move(txn).finish().ops)
      .then([this, shared, done = std::move(done)](const MultiResult& r) {
        shared->post([this, done, r] {
          if (!halted()) done(r);
        });
      });
}

void WorkerAgent::startOne(const std::string& id, const tasks::TaskStatus& running) {
  if (halted()) return;
  Item* item = find(id);
  if (item == nullptr) return;
  tasks::Txn txn(layout_);
  txn.add(startPart(*item, running));
  auto t = std::move(txn).finish();
  auto shared = shared_;
  coord_.multi(std::move(t.ops))
      .then([this, shared, id, running, decoder = std::move(t.decoder)](const MultiResult& r) {
        std::optional<tasks::FailedStep> failed;
        if (!r) failed = decoder.failed(r.error());
        shared->post([this, id, running, r, failed] { onStarted(id, running, r, failed); });
      });
}

tasks::TaskOps WorkerAgent::startPart(const Item& item, const tasks::TaskStatus& running) const {
  return tasks::start(layout_, worker_id_, item.version, running, item.status_exists);
}

void WorkerAgent::onStarted(const std::string& id, const tasks::TaskStatus& running,
                            const MultiResult& r, std::optional<tasks::FailedStep> failed) {
  if (halted()) return;
  Item* item = find(id);
  if (item == nullptr) return;
  if (!r) {
    if (sessionGone(r.error())) return;
    if (isFence(r.error(), failed)) {
      if (item->phase == Phase::kRunning || item->phase == Phase::kCommitting) {
        // Launched before the write (mark_running_after): the run is stopped, and its commit
        // is fenced like any late result.
        spdlog::info("worker {}: assignment {} was taken away while it ran", worker_id_, id);
        if (item->phase == Phase::kRunning) runner_.cancel(id, CancelReason::kCancelled);
        return;
      }
      spdlog::info("worker {}: assignment {} was taken away before it started", worker_id_, id);
      bump(&AgentStats::dropped);
      finish(id);
      return;
    }
    if (r.error().outcomeUnknown()) {
      retryLater(*item, [this, id, running] { verifyStart(id, running); });
      return;
    }
    if (failed && failed->step == tasks::Step::kStatus && r.error().code() == Code::kNoNode &&
        item->status_exists) {
      item->status_exists = false;  // broken tree: the status is created with the start
      startRun(id);
      return;
    }
    if (item->tries < kMaxOddRetries) {
      spdlog::warn("worker {}: start of {} failed: {}; retrying", worker_id_, id,
                   r.error().toString());
      retryLater(*item, [this, id] { startRun(id); });
      return;
    }
    spdlog::error("worker {}: start of {} failed: {}; giving up", worker_id_, id,
                  r.error().toString());
    if (item->phase == Phase::kRunning || item->phase == Phase::kCommitting) return;  // commits
    finish(id);
    return;
  }
  item->tries = 0;
  item->status = running;
  item->status_exists = true;
  if (item->phase == Phase::kRunning || item->phase == Phase::kCommitting) return;  // launched
  if (item->gone) {
    bump(&AgentStats::dropped);
    finish(id);
    return;
  }
  launch(id);
}

// After an ambiguous start: the status tells whether it landed (ours carries our start time).
void WorkerAgent::verifyStart(const std::string& id, const tasks::TaskStatus& running) {
  if (halted() || find(id) == nullptr) return;
  auto shared = shared_;
  coord_.get(layout_.status(id), nullptr)
      .then([this, shared, id, running](const coord::Result<coord::Node>& r) {
        shared->post([this, id, running, r] {
          if (halted()) return;
          Item* item = find(id);
          if (item == nullptr) return;
          if (!r && r.error().code() != Code::kNoNode) {
            if (sessionGone(r.error())) return;
            retryLater(*item, [this, id, running] { verifyStart(id, running); });
            return;
          }
          std::optional<tasks::TaskStatus> now;
          if (r) {
            if (auto json = tasks::parseJson(r->data)) now = tasks::statusFromJson(*json);
          }
          bool landed = now && now->state == State::kRunning && now->worker == worker_id_ &&
                        now->attempts == running.attempts && now->started_at == running.started_at;
          if (landed) {
            onStarted(id, running, std::vector<coord::OpResult>{}, std::nullopt);
          } else {
            startRun(id);  // not applied: try again (the check fences it if the token went)
          }
        });
      });
}

void WorkerAgent::launch(const std::string& id) {
  Item& item = items_.at(id);
  const tasks::TaskSpec& spec = item.assignment->spec;
  TaskContext ctx;
  ctx.id = id;
  ctx.attempt = item.assignment->attempt;
  ctx.worker = worker_id_;
  ctx.payload = spec.payload;
  ctx.cancel = item.token;
  ctx.timeout = std::chrono::milliseconds(static_cast<int64_t>(spec.timeout_s * 1000.0));
  {
    std::lock_guard lock(shared_->mu);
    ++shared_->runs;
  }
  auto shared = shared_;
  bool ok = runner_.tryRun(std::move(ctx), handlers_.find(spec.type),
                           [this, shared](const std::string& task_id, HandlerResult result) {
                             shared->post([this, task_id, result = std::move(result)]() mutable {
                               onRunDone(task_id, std::move(result));
                             });
                             std::lock_guard lock(shared->mu);
                             if (--shared->runs == 0) shared->runs_cv.notify_all();
                           });
  if (!ok) {
    {
      std::lock_guard lock(shared_->mu);
      if (--shared_->runs == 0) shared_->runs_cv.notify_all();
    }
    if (item.phase != Phase::kWaiting) {
      spdlog::warn("worker {}: no free slot for {}; it waits", worker_id_, id);
      item.phase = Phase::kWaiting;
      waiting_.push_back(id);
    }
    // The Runner's slot listener launches it when a slot frees.
    return;
  }
  if (item.phase == Phase::kWaiting) std::erase(waiting_, id);
  item.phase = Phase::kRunning;
  if (item.running_sent && item.status && item.status->state == State::kRunning) {
    item.started_at = item.status->started_at;  // the time the `running` write recorded
  } else {
    item.started_at = base::wallMillis();
  }
  if (!item.running_sent) {
    auto czxid = item.czxid;
    shared_->postAfter(options_.mark_running_after, [this, id, czxid] { markRunning(id, czxid); });
  }
  std::lock_guard lock(stats_mu_);
  ++stats_.running;
}

void WorkerAgent::markRunning(const std::string& id, int64_t czxid) {
  if (halted()) return;
  Item* item = find(id);
  // Still this assignment, still running, and nobody wrote `running` yet.
  if (item == nullptr || item->czxid != czxid || item->phase != Phase::kRunning ||
      item->running_sent || item->gone) {
    return;
  }
  startRun(id);
}

void WorkerAgent::launchWaiting() {
  if (halted()) return;
  std::vector<std::string> waiting = waiting_;
  for (const auto& id : waiting) {
    Item* item = find(id);
    if (item == nullptr || item->phase != Phase::kWaiting) continue;
    launch(id);
    if (item->phase == Phase::kWaiting) break;  // still no slot
  }
}

void WorkerAgent::onRunDone(const std::string& id, HandlerResult result) {
  Item* item = find(id);
  if (item == nullptr || item->phase != Phase::kRunning) return;
  {
    std::lock_guard lock(stats_mu_);
    --stats_.running;
  }
  if (halted()) {
    finish(id);  // not committed: the leader requeues it
    return;
  }
  prepareCommit(*item, result);
  queueCommit(id);
  if (!waiting_.empty()) launchWaiting();
  startQueued();
}

// --- Commit ---

void WorkerAgent::prepareCommit(Item& item, const HandlerResult& result) {
  const tasks::Assignment& a = *item.assignment;
  tasks::TaskStatus target = *item.status;
  target.attempts = a.attempt;
  target.worker = worker_id_;
  if (item.started_at > 0) target.started_at = item.started_at;
  int64_t now = base::wallMillis();
  item.retry_job.reset();
  if (result.ok) {
    item.outcome = Outcome::kSucceeded;
    target.state = State::kSucceeded;
    target.result = result.result;
    target.error.clear();
    target.finished_at = now;
  } else if (a.attempt < a.spec.max_attempts) {
    item.outcome = Outcome::kRetry;
    target.state = State::kPending;
    target.result = nullptr;
    target.error = result.error;
    target.finished_at = 0;
    auto delay = options_.retry_backoff.delay(static_cast<uint32_t>(a.attempt));
    item.retry_job =
        tasks::Job{a.spec, a.attempt + 1,
                   now + std::chrono::duration_cast<std::chrono::milliseconds>(delay).count(),
                   target.submitted_at, target.error};
  } else {
    item.outcome = Outcome::kFailed;
    target.state = State::kFailed;
    target.result = result.result;  // the failure's detail, e.g. a command's output
    target.error = result.error;
    target.finished_at = now;
  }
  item.target = std::move(target);
  item.phase = Phase::kCommitting;
  item.tries = 0;
}

tasks::TaskOps WorkerAgent::commitPart(const Item& item) const {
  return tasks::commit(layout_, worker_id_, item.version, item.target, item.retry_job,
                       item.status_exists, base::wallMillis());
}

void WorkerAgent::queueCommit(const std::string& id) {
  ready_.push_back(id);
  flushSoon(flush_posted_, &WorkerAgent::flushCommits);
}

void WorkerAgent::flushCommits() {
  if (halted()) return;
  std::vector<std::string> ready;
  ready.swap(ready_);
  size_t i = 0;
  while (i < ready.size()) {
    // One batch: as many ready commits as fit the bounds.
    std::vector<std::string> batch;
    tasks::Txn txn(layout_);
    for (; i < ready.size(); ++i) {
      Item* item = find(ready[i]);
      if (item == nullptr) continue;
      auto part = commitPart(*item);
      if (!txn.fits(part, options_.max_batch, options_.max_batch_bytes)) break;
      txn.add(std::move(part));
      batch.push_back(item->id);
    }
    if (batch.empty()) continue;
    if (batch.size() == 1) {
      commitOne(batch[0]);
      continue;
    }
    sendBatch(std::move(txn), [this, batch](const MultiResult& r) {
      if (r) {
        for (const auto& id : batch) landed(id);
        return;
      }
      if (sessionGone(r.error())) return;
      for (const auto& id : batch) {
        if (find(id) == nullptr) continue;
        if (r.error().outcomeUnknown()) {
          resolve(id);
        } else {
          commitOne(id);  // one fenced task must not hold back the others
        }
      }
    });
  }
}

void WorkerAgent::commitOne(const std::string& id) {
  if (halted()) return;
  Item* item = find(id);
  if (item == nullptr) return;
  tasks::Txn txn(layout_);
  txn.add(commitPart(*item));
  auto t = std::move(txn).finish();
  auto shared = shared_;
  coord_.multi(std::move(t.ops))
      .then([this, shared, id, decoder = std::move(t.decoder)](const MultiResult& r) {
        std::optional<tasks::FailedStep> failed;
        if (!r) failed = decoder.failed(r.error());
        shared->post([this, id, r, failed] { onCommitted(id, r, failed); });
      });
}

void WorkerAgent::onCommitted(const std::string& id, const MultiResult& r,
                              std::optional<tasks::FailedStep> failed) {
  if (halted()) return;
  Item* item = find(id);
  if (item == nullptr) return;
  if (r) {
    landed(id);
    return;
  }
  if (sessionGone(r.error())) return;
  if (isFence(r.error(), failed)) {
    fenced(id);
    return;
  }
  if (r.error().outcomeUnknown()) {
    resolve(id);
    return;
  }
  if (item->tries < kMaxOddRetries) {
    spdlog::warn("worker {}: commit of {} failed: {}; retrying", worker_id_, id,
                 r.error().toString());
    retryLater(*item, [this, id] { commitOne(id); });
    return;
  }
  spdlog::error("worker {}: commit of {} failed: {}; giving up (the task stays assigned)",
                worker_id_, id, r.error().toString());
  finish(id);
}

// After an ambiguous commit: the token tells. Still there (the same node) = not applied, so the
// commit is sent again; gone = applied by us or consumed by someone else, which the status says.
void WorkerAgent::resolve(const std::string& id) {
  if (halted() || find(id) == nullptr) return;
  auto shared = shared_;
  coord_.get(layout_.assignment(worker_id_, id), nullptr)
      .then([this, shared, id](const coord::Result<coord::Node>& r) {
        shared->post([this, id, r] {
          if (halted()) return;
          Item* item = find(id);
          if (item == nullptr) return;
          if (r && r->stat.czxid == item->czxid) {
            retryLater(*item, [this, id] { commitOne(id); });
            return;
          }
          if (!r && r.error().code() != Code::kNoNode) {
            if (sessionGone(r.error())) return;
            retryLater(*item, [this, id] { resolve(id); });
            return;
          }
          resolveByStatus(id);
        });
      });
}

void WorkerAgent::resolveByStatus(const std::string& id) {
  auto shared = shared_;
  coord_.get(layout_.status(id), nullptr)
      .then([this, shared, id](const coord::Result<coord::Node>& r) {
        shared->post([this, id, r] {
          if (halted()) return;
          Item* item = find(id);
          if (item == nullptr) return;
          if (!r && r.error().code() != Code::kNoNode) {
            if (sessionGone(r.error())) return;
            retryLater(*item, [this, id] { resolveByStatus(id); });
            return;
          }
          std::optional<tasks::TaskStatus> now;
          if (r) {
            if (auto json = tasks::parseJson(r->data)) now = tasks::statusFromJson(*json);
          }
          const tasks::TaskStatus& t = item->target;
          bool ours = false;
          if (now) {
            if (item->outcome == Outcome::kRetry) {
              ours = (now->state == State::kPending && now->attempts == t.attempts &&
                      now->error == t.error) ||
                     now->attempts > t.attempts;  // our requeue was already picked up
            } else {
              ours = now->state == t.state && now->attempts == t.attempts &&
                     now->worker == worker_id_ && now->finished_at == t.finished_at;
            }
          }
          if (ours) {
            landed(id);
          } else {
            fenced(id);
          }
        });
      });
}

void WorkerAgent::landed(const std::string& id) {
  Item* item = find(id);
  if (item == nullptr) return;
  const auto& t = item->target;
  recordCompletion(item->outcome == Outcome::kSucceeded ? "succeeded"
                   : item->outcome == Outcome::kRetry   ? "retried"
                                                        : "failed",
                   t.submitted_at, t.started_at, t.finished_at);
  switch (item->outcome) {
    case Outcome::kSucceeded:
      bump(&AgentStats::succeeded);
      break;
    case Outcome::kRetry:
      bump(&AgentStats::retried);
      break;
    case Outcome::kFailed:
      bump(&AgentStats::failed);
      break;
  }
  spdlog::debug("worker {}: committed {} as {}", worker_id_, id,
                tasks::stateName(item->target.state));
  finish(id);
}

void WorkerAgent::fenced(const std::string& id) {
  spdlog::info("worker {}: commit of {} fenced (its assignment is gone); result discarded",
               worker_id_, id);
  bump(&AgentStats::fenced_commits);
  static auto& fenced_total = base::metrics().counter(
      "drover_worker_fenced_commits_total",
      "Worker commits refused because the assignment was gone (late results discarded)");
  fenced_total.inc();
  finish(id);
}

void WorkerAgent::finish(const std::string& id) {
  items_.erase(id);
  // A listing seen meanwhile may have shown a new assignment under this name as the old one.
  if (listed_.count(id) != 0) list();
  startQueued();  // it may have held a slot
}

}  // namespace drover::worker

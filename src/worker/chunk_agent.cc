#include "worker/chunk_agent.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>

#include "base/clock.h"
#include "base/metrics.h"
#include "worker/completion_metrics.h"

namespace drover::worker {
namespace {

using coord::Code;
using tasks::State;

// Batch records kept for specs that were not inline.
constexpr size_t kBatchCache = 64;

// The outcome's id field: only a client-chosen id is stored (a generated one follows).
std::string storedId(const tasks::ChunkItem& item) {
  return item.id == tasks::generatedId(item.ref) ? std::string() : item.id;
}

}  // namespace

void ChunkAgent::Shared::post(base::Task task) {
  std::lock_guard lock(mu);
  if (executor == nullptr) return;
  executor->post([self = shared_from_this(), task = std::move(task)] {
    if (self->live) task();
  });
}

void ChunkAgent::Shared::postAfter(base::Duration delay, base::Task task) {
  std::lock_guard lock(mu);
  if (executor == nullptr) return;
  executor->postAfter(delay, [self = shared_from_this(), task = std::move(task)] {
    if (self->live) task();
  });
}

ChunkAgent::ChunkAgent(coord::Coordination& coord, tasks::Layout layout, std::string worker_id,
                       Runner& runner, const HandlerRegistry& handlers, AgentOptions options,
                       base::Executor* executor)
    : coord_(coord),
      layout_(std::move(layout)),
      worker_id_(std::move(worker_id)),
      runner_(runner),
      handlers_(handlers),
      options_(options),
      own_executor_(executor ? nullptr : std::make_unique<base::ThreadExecutor>("chunk-agent")),
      executor_(executor ? *executor : *own_executor_),
      shared_(std::make_shared<Shared>()) {
  shared_->executor = &executor_;
  auto shared = shared_;
  ChunkCommits::Hooks hooks;
  hooks.post = [shared](base::Task t) { shared->post(std::move(t)); };
  hooks.post_after = [shared](base::Duration d, base::Task t) {
    shared->postAfter(d, std::move(t));
  };
  hooks.reread = [this](const std::string& chunk) { readChunk(chunk, false); };
  hooks.session_lost = [this](const coord::Error& e) { sessionGone(e); };
  hooks.done = [this](const Finished& f, bool landed) { onCommitDone(f, landed); };
  commits_ =
      std::make_unique<ChunkCommits>(coord_, layout_, worker_id_, options_, std::move(hooks));
}

ChunkAgent::~ChunkAgent() { stop(); }

void ChunkAgent::start() {
  if (started_.exchange(true) || stopped_) return;
  coord::SessionEvent now = coord_.session();
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
  // A task that found every Runner slot taken starts when one frees: no polling.
  slot_listener_id_ =
      runner_.addSlotListener([this, shared] { shared->post([this] { startQueued(); }); });
  listeners_added_ = true;
  if (now.state == coord::SessionState::kExpired || now.state == coord::SessionState::kClosed) {
    shared_->dead = true;
  }
  shared_->post([this] { list(); });
}

void ChunkAgent::stop() {
  if (stopped_.exchange(true)) return;
  auto cancel_all = [this] {
    stopping_ = true;
    commits_->halt();  // nothing more is committed: the leader requeues what we held
    for (auto& [key, t] : tasks_) {
      if (t.phase == Phase::kRunning) runner_.cancel(t.item.id, CancelReason::kShutdown);
    }
  };
  if (own_executor_) {
    std::promise<void> cancelled;
    auto done = cancelled.get_future();
    shared_->post([&] {
      cancel_all();
      cancelled.set_value();
    });
    done.wait();
  } else {
    cancel_all();
  }
  {
    std::unique_lock lock(shared_->mu);
    shared_->runs_cv.wait(lock, [&] { return shared_->runs == 0; });
  }
  if (listeners_added_) {
    coord_.removeSessionListener(listener_id_);
    runner_.removeSlotListener(slot_listener_id_);
  }
  shared_->live = false;
  {
    std::lock_guard lock(shared_->mu);
    shared_->executor = nullptr;
  }
  if (own_executor_) own_executor_->stop();
}

bool ChunkAgent::dead() const { return shared_->dead.load(); }

AgentStats ChunkAgent::stats() const {
  std::lock_guard lock(stats_mu_);
  return stats_;
}

void ChunkAgent::becomeDead(const std::string& why) {
  shared_->dead = true;
  spdlog::warn("worker {}: agent is dead ({}); cancelling {} task(s)", worker_id_, why,
               tasks_.size());
  commits_->halt();
  for (auto& [key, t] : tasks_) {
    if (t.phase == Phase::kRunning) runner_.cancel(t.item.id, CancelReason::kShutdown);
  }
  tasks_.clear();
  queue_.clear();
  bumpStats([](AgentStats& s) { s.running = 0; });
}

bool ChunkAgent::sessionGone(const coord::Error& e) {
  if (e.sessionLost() || e.code() == Code::kClosing) {
    if (!shared_->dead) becomeDead(e.toString());
    return true;
  }
  return false;
}

void ChunkAgent::retryLater(uint32_t& tries, base::Task task) {
  shared_->postAfter(options_.zk_backoff.delay(++tries), std::move(task));
}

// --- Chunks ---

void ChunkAgent::list() {
  if (halted()) return;
  bool arm = !watch_armed_;
  coord::Watcher watcher;
  auto shared = shared_;
  if (arm) {
    watch_armed_ = true;
    watcher = [this, shared](const coord::WatchEvent&) {
      shared->post([this] {
        watch_armed_ = false;
        list();
      });
    };
  }
  coord_.children(layout_.assignmentsOf(worker_id_), std::move(watcher))
      .then([this, shared, arm](const coord::Result<std::vector<std::string>>& r) {
        shared->post([this, r, arm] { onListed(r, arm); });
      });
}

void ChunkAgent::onListed(const coord::Result<std::vector<std::string>>& r, bool armed) {
  if (halted()) return;
  if (!r) {
    if (armed) watch_armed_ = false;  // a failed read sets no watch
    if (sessionGone(r.error())) return;
    if (r.error().code() == Code::kNoNode) {
      becomeDead("its assignment folder is gone");
      return;
    }
    spdlog::warn("worker {}: listing chunks failed: {}", worker_id_, r.error().toString());
    retryLater(list_tries_, [this] { list(); });
    return;
  }
  list_tries_ = 0;
  std::set<std::string> listed;
  for (const auto& name : *r) {
    if (!name.starts_with("c-")) continue;  // not a chunk of this protocol
    listed.insert(name);
    if (chunks_.try_emplace(name).second) readChunk(name, true);
  }
  std::vector<std::string> gone;
  for (const auto& [name, view] : chunks_) {
    if (listed.count(name) == 0) gone.push_back(name);
  }
  for (const auto& name : gone) chunkGone(name);
}

void ChunkAgent::readChunk(const std::string& name, bool watch) {
  if (halted() || chunks_.count(name) == 0) return;
  auto shared = shared_;
  coord::Watcher watcher;
  if (watch) {
    watcher = [this, shared, name](const coord::WatchEvent& event) {
      bool deleted = event.type == coord::EventType::kDeleted;
      shared->post([this, name, deleted] { onChunkChanged(name, deleted); });
    };
  }
  coord_.get(layout_.chunk(worker_id_, name), std::move(watcher))
      .then([this, shared, name, watch](const coord::Result<coord::Node>& r) {
        shared->post([this, name, watch, r] {
          if (halted() || chunks_.count(name) == 0) return;
          if (!r && r.error().retryable() && !r.error().sessionLost()) {
            retryLater(chunk_tries_[name], [this, name, watch] { readChunk(name, watch); });
            return;
          }
          onChunk(name, r);
        });
      });
}

void ChunkAgent::onChunk(const std::string& name, const coord::Result<coord::Node>& r) {
  if (!r) {
    if (sessionGone(r.error())) return;
    if (r.error().code() == Code::kNoNode) {
      chunkGone(name);
      return;
    }
    spdlog::error("worker {}: cannot read chunk {}: {}", worker_id_, name, r.error().toString());
    return;
  }
  chunk_tries_.erase(name);
  auto decoded = tasks::decodeChunk(r->data);
  if (!decoded) {
    spdlog::error("worker {}: chunk {} is undecodable; leaving it to the leader", worker_id_, name);
    return;
  }
  auto content = std::make_shared<const tasks::Chunk>(std::move(*decoded));
  ChunkView& view = chunks_.at(name);
  for (const auto& item : content->items) {
    if (view.seen.insert(item.ref).second) take(name, item);
  }
  // Tasks it no longer lists were reclaimed by the leader or cancelled by the API.
  std::vector<Key> lost;
  for (auto it = tasks_.lower_bound(Key{name, {}}); it != tasks_.end() && it->first.first == name;
       ++it) {
    if (!it->second.gone && content->find(it->first.second) == nullptr) lost.push_back(it->first);
  }
  for (const auto& key : lost) lose(key);
  commits_->synced(name, r->stat.version, std::move(content));
  startQueued();
}

// The chunk's data watch fired: by our own commit (the version we wrote) or by another writer.
// A deleted chunk is gone for good (names never repeat), so no watch is set again on its path: an
// exists watch on a missing node stays registered, in the client and on the server, until the
// node is created, which for a chunk is never. One leaked watch per chunk piled up to tens of
// thousands in the C client's watcher tables and stalled its I/O thread after a reconnect.
void ChunkAgent::onChunkChanged(const std::string& name, bool deleted) {
  if (halted() || chunks_.count(name) == 0) return;
  if (deleted) {
    chunkGone(name);
    return;
  }
  auto shared = shared_;
  coord::Watcher watcher = [this, shared, name](const coord::WatchEvent& event) {
    bool gone = event.type == coord::EventType::kDeleted;
    shared->post([this, name, gone] { onChunkChanged(name, gone); });
  };
  coord_.exists(layout_.chunk(worker_id_, name), std::move(watcher))
      .then([this, shared, name](const coord::Result<std::optional<coord::Stat>>& r) {
        shared->post([this, name, r] {
          if (halted() || chunks_.count(name) == 0) return;
          if (!r) {
            if (sessionGone(r.error())) return;
            retryLater(chunk_tries_[name], [this, name] { onChunkChanged(name, false); });
            return;
          }
          if (!r->has_value()) {
            chunkGone(name);
          } else if (commits_->version(name) != (*r)->version) {
            readChunk(name, false);  // the exists call re-armed the watch
          }
        });
      });
}

void ChunkAgent::chunkGone(const std::string& name) {
  std::vector<Key> lost;
  for (auto it = tasks_.lower_bound(Key{name, {}}); it != tasks_.end() && it->first.first == name;
       ++it) {
    if (!it->second.gone) lost.push_back(it->first);
  }
  for (const auto& key : lost) lose(key);
  commits_->synced(name, std::nullopt, nullptr);
  chunks_.erase(name);
  chunk_tries_.erase(name);
}

// --- Tasks ---

void ChunkAgent::take(const std::string& chunk, tasks::ChunkItem item) {
  Key key{chunk, item.ref};
  Task& t = tasks_[key];
  t.item = std::move(item);
  t.seq = next_seq_++;
  if (t.item.spec) {
    ready(key);
  } else {
    needBatch(key);
  }
}

void ChunkAgent::lose(const Key& key) {
  auto it = tasks_.find(key);
  if (it == tasks_.end()) return;
  Task& t = it->second;
  if (t.phase == Phase::kRunning) {
    t.gone = true;  // its outcome is discarded when the run ends
    runner_.cancel(t.item.id, CancelReason::kCancelled);
    return;
  }
  if (t.phase == Phase::kQueued) queue_.erase({-t.item.spec->priority, t.seq, key});
  tasks_.erase(it);
  bumpStats([](AgentStats& s) { ++s.dropped; });
}

void ChunkAgent::needBatch(const Key& key) {
  const std::string& batch = key.second.batch;
  auto cached = batches_.find(batch);
  if (cached == batches_.end()) {
    auto& waiters = batch_waiters_[batch];
    waiters.push_back(key);
    if (waiters.size() > 1) return;  // being read
    auto shared = shared_;
    coord_.get(layout_.batch(batch), nullptr)
        .then([this, shared, batch](const coord::Result<coord::Node>& r) {
          shared->post([this, batch, r] { onBatch(batch, r); });
        });
    return;
  }
  Task& t = tasks_.at(key);
  const auto& specs = cached->second->tasks;
  if (key.second.index >= specs.size()) {
    reject(key, fmt::format("batch {} has no task {}", batch, key.second.index));
    return;
  }
  t.item.spec = specs[key.second.index];
  ready(key);
}

void ChunkAgent::onBatch(const std::string& batch, const coord::Result<coord::Node>& r) {
  if (halted()) return;
  if (!r) {
    if (sessionGone(r.error())) return;
    if (r.error().retryable()) {
      retryLater(batch_tries_[batch], [this, batch] {
        auto shared = shared_;
        coord_.get(layout_.batch(batch), nullptr)
            .then([this, shared, batch](const coord::Result<coord::Node>& r2) {
              shared->post([this, batch, r2] { onBatch(batch, r2); });
            });
      });
      return;
    }
  }
  batch_tries_.erase(batch);
  std::vector<Key> waiters = std::move(batch_waiters_[batch]);
  batch_waiters_.erase(batch);
  std::optional<tasks::BatchRecord> record;
  if (r) record = tasks::decodeBatch(batch, r->data);
  if (record) {
    batches_[batch] = std::make_shared<const tasks::BatchRecord>(std::move(*record));
    batch_order_.push_back(batch);
    if (batch_order_.size() > kBatchCache) {
      batches_.erase(batch_order_.front());
      batch_order_.erase(batch_order_.begin());
    }
  }
  for (const auto& key : waiters) {
    auto it = tasks_.find(key);
    if (it == tasks_.end() || it->second.phase != Phase::kSpec) continue;
    if (!record) {
      reject(key,
             r ? fmt::format("batch record {} is undecodable", batch)
               : fmt::format("batch record {} cannot be read: {}", batch, r.error().toString()));
    } else {
      needBatch(key);  // now cached
    }
  }
  startQueued();
}

void ChunkAgent::ready(const Key& key) {
  Task& t = tasks_.at(key);
  if (!handlers_.has(t.item.spec->type)) {
    reject(key, fmt::format("unknown task type '{}'", t.item.spec->type));
    return;
  }
  t.phase = Phase::kQueued;
  queue_.insert({-t.item.spec->priority, t.seq, key});
}

// Fails a task without running it, for good: no worker would know better.
void ChunkAgent::reject(const Key& key, const std::string& why) {
  auto it = tasks_.find(key);
  if (it == tasks_.end()) return;
  spdlog::warn("worker {}: task {} fails without running: {}", worker_id_, it->second.item.id, why);
  Finished f;
  f.item = std::move(it->second.item);
  f.callback = !f.item.spec || !f.item.spec->callback_url.empty();
  f.item.spec.reset();
  f.outcome.index = key.second.index;
  f.outcome.id = storedId(f.item);
  f.outcome.state = State::kFailed;
  f.outcome.attempt = f.item.attempt;
  f.outcome.worker = worker_id_;
  f.outcome.finished_at = base::wallMillis();
  f.outcome.error = why;
  f.rejected = true;
  tasks_.erase(it);
  bumpStats([](AgentStats& s) { ++s.rejected; });
  commits_->add(key.first, std::move(f));
}

void ChunkAgent::startQueued() {
  if (halted()) return;
  while (!queue_.empty()) {
    const Key key = std::get<2>(*queue_.begin());
    Task& t = tasks_.at(key);
    const tasks::TaskSpec& spec = *t.item.spec;
    TaskContext ctx;
    ctx.id = t.item.id;
    ctx.attempt = t.item.attempt;
    ctx.worker = worker_id_;
    ctx.payload = spec.payload;
    ctx.cancel = t.token;
    ctx.timeout = std::chrono::milliseconds(static_cast<int64_t>(spec.timeout_s * 1000.0));
    {
      std::lock_guard lock(shared_->mu);
      ++shared_->runs;
    }
    auto shared = shared_;
    bool ok =
        runner_.tryRun(std::move(ctx), handlers_.find(spec.type),
                       [this, shared, key](const std::string&, HandlerResult result) {
                         int64_t ended = base::wallMillis();
                         shared->post([this, key, ended, result = std::move(result)]() mutable {
                           onRunDone(key, std::move(result), ended);
                         });
                         std::lock_guard lock(shared->mu);
                         if (--shared->runs == 0) shared->runs_cv.notify_all();
                       });
    if (!ok) {
      std::lock_guard lock(shared_->mu);
      if (--shared_->runs == 0) shared_->runs_cv.notify_all();
      return;  // no slot: the Runner's slot listener calls again
    }
    queue_.erase(queue_.begin());
    t.phase = Phase::kRunning;
    t.started = executor_.clock().now();
    t.started_wall = base::wallMillis();
    bumpStats([](AgentStats& s) { ++s.running; });
    runningChanged();
  }
}

void ChunkAgent::onRunDone(const Key& key, HandlerResult result, int64_t ended_ms) {
  auto it = tasks_.find(key);
  if (it == tasks_.end() || it->second.phase != Phase::kRunning) return;
  bumpStats([](AgentStats& s) { --s.running; });
  Task& t = it->second;
  if (halted() || t.gone) {
    // Taken from its chunk (reclaimed or cancelled) while it ran: its outcome is not ours to
    // record. On shutdown or death the leader requeues it.
    if (t.gone && !halted()) countFenced();
    tasks_.erase(it);
    runningChanged();
    startQueued();
    return;
  }
  const tasks::TaskSpec& spec = *t.item.spec;
  Finished f;
  f.callback = !spec.callback_url.empty();
  f.outcome.index = key.second.index;
  f.outcome.id = storedId(t.item);
  f.outcome.attempt = t.item.attempt;
  f.outcome.worker = worker_id_;
  f.outcome.started_at = t.started_wall;
  f.outcome.finished_at = std::max(ended_ms, t.started_wall);
  if (result.ok) {
    f.outcome.state = State::kSucceeded;
    f.outcome.result = std::move(result.result);
  } else {
    f.outcome.state = State::kFailed;
    f.outcome.error = result.error;
    f.outcome.result = std::move(result.result);  // the failure's detail
    if (t.item.attempt < spec.max_attempts) {
      base::Backoff policy = options_.retry_backoff;
      if (spec.retry) {  // the task's own policy (docs/WORKFLOWS.md "Retry and dead letters")
        policy = base::Backoff{std::chrono::duration_cast<base::Duration>(
                                   std::chrono::duration<double>(spec.retry->backoff_base_s)),
                               std::chrono::duration_cast<base::Duration>(
                                   std::chrono::duration<double>(spec.retry->backoff_cap_s)),
                               2.0, spec.retry->jitter};
      }
      auto delay = policy.delay(static_cast<uint32_t>(t.item.attempt));
      f.retry = tasks::Waiting{
          t.item.attempt + 1,
          base::wallMillis() + std::chrono::duration_cast<std::chrono::milliseconds>(delay).count(),
          result.error};
    }
  }
  f.item = std::move(t.item);
  f.item.spec.reset();
  tasks_.erase(it);
  commits_->add(key.first, std::move(f));
  runningChanged();
  startQueued();
}

void ChunkAgent::countFenced() {
  bumpStats([](AgentStats& s) { ++s.fenced_commits; });
  static auto& fenced_total = base::metrics().counter(
      "drover_worker_fenced_commits_total",
      "Worker commits refused because the assignment was gone (late results discarded)");
  fenced_total.inc();
}

void ChunkAgent::onCommitDone(const Finished& f, bool landed) {
  if (!landed) {
    spdlog::info("worker {}: outcome of {} discarded (its chunk no longer holds it)", worker_id_,
                 f.item.id);
    countFenced();
    return;
  }
  if (f.retry) {
    recordCompletion("retried", f.item.submitted_at, f.outcome.started_at, f.outcome.finished_at);
    bumpStats([](AgentStats& s) { ++s.retried; });
  } else if (f.outcome.state == State::kSucceeded) {
    recordCompletion("succeeded", f.item.submitted_at, f.outcome.started_at, f.outcome.finished_at);
    bumpStats([](AgentStats& s) { ++s.succeeded; });
  } else {
    recordCompletion("failed", f.item.submitted_at, f.outcome.started_at, f.outcome.finished_at);
    bumpStats([](AgentStats& s) { ++s.failed; });
  }
}

// --- The running report (WorkerInfo.running in /workers/{id}) ---

void ChunkAgent::runningChanged() {
  if (report_timer_ || halted()) return;
  report_timer_ = true;
  auto now = executor_.clock().now();
  base::Duration delay = options_.mark_running_after;
  if (last_report_ != base::TimePoint{}) {
    delay = std::max(delay, last_report_ + kReportInterval - now);
  }
  shared_->postAfter(delay, [this] { reportTick(); });
}

void ChunkAgent::reportTick() {
  report_timer_ = false;
  if (halted()) return;
  auto now = executor_.clock().now();
  std::map<std::string, int64_t> running;
  bool younger = false;  // a run not old enough to list yet: look again later
  for (const auto& [key, t] : tasks_) {
    if (t.phase != Phase::kRunning || t.gone) continue;
    if (now - t.started >= options_.mark_running_after) {
      running.emplace(t.item.id, t.started_wall);
    } else {
      younger = true;
    }
  }
  bool due = last_report_ == base::TimePoint{} || now - last_report_ >= kReportInterval;
  if (running != reported_) {
    if (report_inflight_) {
      report_again_ = true;
    } else if (due) {
      last_report_ = now;
      report_inflight_ = true;
      reported_ = running;
      writeReport();
    } else {
      younger = true;
    }
  }
  if (younger) runningChanged();
}

void ChunkAgent::writeReport() {
  auto shared = shared_;
  std::string path = layout_.worker(worker_id_);
  auto retry = [this](const coord::Error& e) {
    if (sessionGone(e)) return;
    if (e.code() == Code::kNoNode) {
      report_inflight_ = false;  // not registered (any more): nothing to report into
      return;
    }
    if (e.code() == Code::kBadVersion) info_.reset();
    retryLater(report_tries_, [this] { writeReport(); });
  };
  if (!info_) {
    coord_.get(path, nullptr).then([this, shared, retry](const coord::Result<coord::Node>& r) {
      shared->post([this, r, retry] {
        if (halted()) return;
        if (!r) return retry(r.error());
        auto json = tasks::parseJson(r->data);
        if (json) info_ = tasks::workerFromJson(*json);
        if (!info_) {
          spdlog::error("worker {}: its /workers record is unreadable; no running report",
                        worker_id_);
          return;
        }
        info_version_ = r->stat.version;
        writeReport();
      });
    });
    return;
  }
  info_->running = reported_;
  coord_.set(path, tasks::toJson(*info_).dump(), info_version_)
      .then([this, shared, retry](const coord::Result<coord::Stat>& r) {
        shared->post([this, r, retry] {
          if (halted()) return;
          if (!r) return retry(r.error());
          report_tries_ = 0;
          info_version_ = r->version;
          report_inflight_ = false;
          if (report_again_) {
            report_again_ = false;
            runningChanged();
          }
        });
      });
}

}  // namespace drover::worker

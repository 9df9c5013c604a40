// ChunkAgent, its tasks: taking the items of its chunks, reading batch records for specs that
// were not inline, running them in order, committing their outcomes, and the running report
// in /workers/{id}. Following /assignments/{worker} and the agent's lifecycle are in
// chunk_agent.cc.

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "base/clock.h"
#include "base/metrics.h"
#include "worker/chunk_agent.h"
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
  base::Duration delay =
      std::max<base::Duration>(options_.mark_running_after, reportAllowedAt() - now);
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
  bool due = now >= reportAllowedAt();
  if (running != reported_) {
    if (report_inflight_) {
      report_again_ = true;
    } else if (due) {
      report_due_ = std::max(report_due_, now) + kReportInterval;
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

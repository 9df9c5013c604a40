#include "scheduler/batch_scheduler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <utility>

#include "scheduler/chunk_queue_counts.h"
#include "tasks/protocol.h"

namespace drover::scheduler {

using coord::Code;
using coord::Error;
using coord::Result;

// One assign multi in flight: what it took, for the bookkeeping when it comes back.
struct BatchScheduler::InFlight {
  Round round;
  std::vector<tasks::v2::PendingWrite> writes;
  tasks::v2::Decoder decoder;
};

BatchScheduler::BatchScheduler(coord::Coordination& coord, tasks::Layout layout, Options options,
                               int32_t epoch, FencedCallback on_fenced)
    : BatchScheduler(coord, std::move(layout), std::move(options), epoch, std::move(on_fenced),
                     nullptr) {}

BatchScheduler::BatchScheduler(coord::Coordination& coord, tasks::Layout layout, Options options,
                               int32_t epoch, FencedCallback on_fenced, base::Executor& executor)
    : BatchScheduler(coord, std::move(layout), std::move(options), epoch, std::move(on_fenced),
                     &executor) {}

BatchScheduler::BatchScheduler(coord::Coordination& coord, tasks::Layout layout, Options options,
                               int32_t epoch, FencedCallback on_fenced, base::Executor* executor)
    : coord_(coord),
      layout_(std::move(layout)),
      options_(std::move(options)),
      epoch_(epoch),
      on_fenced_(std::move(on_fenced)),
      picker_(makePicker(options_.strategy)),
      own_executor_(executor ? nullptr : std::make_unique<base::ThreadExecutor>("scheduler")),
      executor_(executor ? executor : own_executor_.get()),
      gate_(std::make_shared<Gate>()),
      ctx_{
          coord_,
          layout_,
          epoch_,
          [gate = gate_, this](std::function<void()> fn) { postVia(gate, this, std::move(fn)); },
          [this](base::Duration delay, std::function<void()> fn) { later(delay, std::move(fn)); },
          [this] { return active(); },
          [this](const std::string& reason) { fence(reason); },
          [this](const Error& e, std::function<void()> retry) { onReadError(e, std::move(retry)); },
          [this] { return retryDelay(); }} {
  if (!picker_) {
    spdlog::warn("scheduler: unknown strategy '{}', using least-loaded", options_.strategy);
    picker_ = std::make_unique<LeastLoadedPicker>();
  }
  gate_->executor = executor_;
  auto wall = [this] { return this->wall(); };
  pending_ = std::make_unique<PendingTracker>(
      ctx_,
      PendingTracker::Options{options_.relist_ready_below, options_.relist_delay,
                              options_.max_watched},
      index_, wall, [this] { pump(); });
  deps_ = std::make_unique<DependencyTracker>(ctx_, *pending_, wall);
  pending_->setDependencyHooks(
      [this](const PendingTracker::Batch& b, uint32_t i) { return deps_->hold(b, i); },
      [this](const tasks::TaskRef& ref) { deps_->left(ref); });
  workers_ = std::make_unique<WorkerTracker>(
      ctx_, [this] { pump(); }, [this](const std::string& w) { requeue_->requeueWorker(w); });
  requeue_ = std::make_unique<ChunkRequeue>(ctx_, *pending_, *workers_, wall,
                                            options_.orphan_dir_grace, [this] { pump(); });
  retention_ = std::make_unique<BatchRetention>(
      ctx_, BatchRetention::Options{options_.retention_age, 500, options_.retention_count},
      *pending_, *workers_, *requeue_, wall);
  retention_->onExpired([this](const std::string& batch) { deps_->forgetBatch(batch); });
  queues_ = std::make_unique<QueueBoard>(ctx_, [this] { pump(); });
  cleanup_ = std::make_unique<Cleanup>(
      coord_, layout_, Cleanup::Options{options_.events_keep},
      [gate = gate_, this](std::function<void()> fn) { postVia(gate, this, std::move(fn)); },
      [this] { return active(); });
  assigner_ = std::make_unique<ChunkAssigner>(
      *picker_, ChunkAssigner::Limits{options_.max_round_tasks, options_.max_round_bytes});
  waiting_ = std::make_unique<WaitingPublisher>(
      ctx_, WaitingPublisher::Options{options_.waiting_interval},
      [this]() -> std::optional<tasks::WaitingCount> {
        if (!pending_->scanned()) return std::nullopt;  // a partial count would let a flood in
        tasks::WaitingCount count;
        // Dependents held out of the index wait too (GET shows them `waiting`).
        count.waiting = index_.ready() + index_.delayed() + deps_->blocked();
        count.delayed = index_.delayedFirstRuns() + deps_->blocked();
        count.blocked = deps_->blocked();
        for (const auto& [id, w] : workers_->workers()) {  // the items of their chunks
          count.held += static_cast<uint64_t>(std::max(0, w.held() - w.reserved));
        }
        return count;
      },
      wall);
}

BatchScheduler::~BatchScheduler() { stop(); }

int64_t BatchScheduler::wall() const {
  return options_.wall_ms ? options_.wall_ms() : base::wallMillis();
}

void BatchScheduler::start() {
  std::call_once(started_, [this] {
    std::weak_ptr<Gate> weak = gate_;
    listener_id_ = coord_.addSessionListener([this, weak](const coord::SessionEvent& event) {
      if (auto gate = weak.lock()) postVia(gate, this, [this, event] { onSession(event); });
    });
    post([this] { begin(); });
  });
}

void BatchScheduler::stop() {
  std::call_once(stopped_, [this] {
    {
      std::lock_guard lock(gate_->mu);
      gate_->executor = nullptr;
    }
    if (listener_id_ != 0) coord_.removeSessionListener(listener_id_);
    std::lock_guard lock(stats_mu_);
    stats_.running = false;
  });
  if (own_executor_ && !own_executor_->isCurrent()) {
    own_executor_->stop();
    std::lock_guard lock(stats_mu_);
    stats_.running = false;
  }
}

void BatchScheduler::reconcile() {
  post([this] { fullReconcile(); });
}

void BatchScheduler::sweepNow() {
  post([this] { sweep(true); });
}

size_t BatchScheduler::watchedPendingStates() const {
  return pending_ ? pending_->watchedCount() : 0;
}

size_t BatchScheduler::unwatchedPendingStates() const {
  return pending_ ? pending_->unwatchedCount() : 0;
}

BatchScheduler::Stats BatchScheduler::snapshot() const {
  std::lock_guard lock(stats_mu_);
  return stats_;
}

void BatchScheduler::postVia(const std::shared_ptr<Gate>& gate, BatchScheduler* self,
                             std::function<void()> fn) {
  std::lock_guard lock(gate->mu);
  if (!gate->executor) return;  // stopped: `self` may be gone
  gate->executor->post([gate, self, fn = std::move(fn)] {
    {
      std::lock_guard lock(gate->mu);
      if (!gate->executor) return;  // stopped after posting (an outside executor lives on)
    }
    fn();
    self->schedulePublish();
  });
}

void BatchScheduler::later(base::Duration delay, std::function<void()> fn) {
  std::lock_guard lock(gate_->mu);
  if (!gate_->executor) return;
  gate_->executor->postAfter(delay, [gate = gate_, this, fn = std::move(fn)] {
    {
      std::lock_guard lock(gate->mu);
      if (!gate->executor) return;
    }
    fn();
    schedulePublish();
  });
}

void BatchScheduler::schedulePublish() {
  // Once per burst of callbacks, not after each: the copy of the stats (every worker's load)
  // cost more than the callbacks themselves at thousands of tasks per second.
  if (publish_posted_) return;
  publish_posted_ = true;
  std::lock_guard lock(gate_->mu);
  if (!gate_->executor) return;
  gate_->executor->post([gate = gate_, this] {
    {
      std::lock_guard lock(gate->mu);
      if (!gate->executor) return;
    }
    publish_posted_ = false;
    publish();
  });
}

void BatchScheduler::publish() {
  Stats s = counters_;
  s.requeued_total = requeue_->requeued();
  s.failed_total = requeue_->failed();
  s.reclaimed_total = requeue_->reclaimed();
  s.events_trimmed = cleanup_->eventsTrimmed();
  s.statuses_deleted = retention_->batchesExpired();
  s.running = running_;
  s.fenced = fenced_;
  s.pending = index_.ready();
  s.delayed = index_.delayed();
  s.dependency_outcomes = deps_->outcomesKept();
  s.batch_records = pending_->recordsHeld();
  s.pending_by_priority = index_.readyByPriority();
  s.workers = workers_->loads([this](const std::string& w) { return draining(w); });
  std::lock_guard lock(stats_mu_);
  stats_ = std::move(s);
}

void BatchScheduler::fence(const std::string& reason) {
  if (fenced_) return;
  fenced_ = true;
  counters_.fenced = true;
  counters_.fenced_reason = reason;
  counters_.fenced_count = 1;
  spdlog::warn("scheduler: fenced ({}), stepping down", reason);
  publish();
  if (on_fenced_) on_fenced_(reason);
}

base::Duration BatchScheduler::retryDelay() {
  read_failures_ = std::min<uint32_t>(read_failures_ + 1, 16);
  return options_.retry_backoff.delay(read_failures_, read_failures_);
}

void BatchScheduler::onReadError(const Error& error, std::function<void()> retry) {
  if (error.sessionLost()) return fence("session expired");
  if (error.code() == Code::kClosing) return fence("session closed");
  spdlog::debug("scheduler: read failed ({}), retrying", error.toString());
  later(retryDelay(), [this, retry = std::move(retry)] {
    if (active()) retry();
  });
}

// --- Start, sweep, session ---

void BatchScheduler::begin() {
  if (fenced_) return;
  running_ = true;
  connected_ = coord_.session().state == coord::SessionState::kConnected;
  spdlog::info("scheduler: leading (protocol 2) with epoch version {}", epoch_);
  fullReconcile();
  scheduleSweep();
  waiting_->start();
  later(options_.first_assign_after, [this] {
    if (!active() || initial_loaded_) return;
    assign_early_ = true;  // a large backlog: assign from what is loaded so far
    pump();
  });
}

void BatchScheduler::fullReconcile() {
  if (!active()) return;
  workers_->follow();
  queues_->follow();
  pending_->follow();
}

void BatchScheduler::scheduleSweep() {
  later(options_.sweep_interval, [this] {
    if (!active()) return;
    sweep(false);
    scheduleSweep();
  });
}

void BatchScheduler::sweep(bool housekeeping_only) {
  if (!active()) return;
  ++sweeps_;
  if (!housekeeping_only &&
      (options_.reconcile_every <= 1 || sweeps_ % options_.reconcile_every == 0)) {
    fullReconcile();
  }
  cleanup_->trimEvents();
  deps_->check();
  retention_->sweepPointers();
  if (housekeeping_only || options_.retention_every <= 1 ||
      sweeps_ % options_.retention_every == 0) {
    retention_->expire();
  }
}

void BatchScheduler::onSession(const coord::SessionEvent& event) {
  if (!active()) return;
  switch (event.state) {
    case coord::SessionState::kExpired:
      return fence("session expired");
    case coord::SessionState::kClosed:
      return fence("session closed");
    case coord::SessionState::kDisconnected:
      connected_ = false;
      return;
    case coord::SessionState::kConnected:
      if (!connected_) {
        connected_ = true;
        fullReconcile();
        pump();
      }
      return;
    case coord::SessionState::kConnecting:
      return;
  }
}

// --- Assignment ---

void BatchScheduler::pump() {
  if (!active() || !connected_ || paused_ || round_inflight_) return;
  if (!initial_loaded_) {
    if (!pending_->scanned() || !workers_->loaded()) {
      if (!assign_early_) return;
    } else {
      initial_loaded_ = true;  // the first scan is in: the backlog goes out in priority order
    }
  }
  if (index_.ready() == 0) return;
  auto draining = [this](const std::string& w) { return this->draining(w); };
  std::vector<WorkerLoad> loads = workers_->loads(draining);
  if (loads.empty()) return;
  holdBackSmallRefills(loads);
  // Queue limits: held tasks per queue, counted from the chunks only while some queue has one.
  std::optional<QueueHeld> held;
  if (queues_->limited()) held = heldPerQueue(workers_->workers(), *pending_);
  Round round = assigner_->plan(
      index_, loads, *pending_,
      [this, &held](const std::string& queue, int taken) {
        return queues_->open(queue, taken, held);
      },
      [this] { return tasks::makeChunkName(epoch_, chunk_n_++); });
  // Fair assignment: lower-priority tasks held unstarted give way to what waits behind them.
  if (!requeue_->reclaiming()) {
    for (const auto& [w, chunks] :
         ChunkAssigner::reclaimable(round, workers_->workers(), *pending_, draining)) {
      const auto* worker = workers_->find(w);
      for (const auto& [name, refs] : chunks) {
        const auto& c = worker->chunks.at(name);
        requeue_->reclaim(w, name, c.version, c.chunk, refs);
      }
    }
  }
  if (!round.chunks.empty()) send(std::move(round));
}

void BatchScheduler::send(Round round) {
  auto flight = std::make_shared<InFlight>();
  const int64_t now = wall();
  // Each batch taken from: its known state with the taken tasks pointing at their new chunks.
  std::map<std::string, tasks::v2::PendingWrite> writes;
  for (const auto& chunk : round.chunks) {
    for (const auto& item : chunk.chunk.items) {
      auto [w, fresh] = writes.try_emplace(item.ref.batch);
      if (fresh) {
        const auto* b = pending_->find(item.ref.batch);  // known: its tasks were indexed
        w->second = tasks::v2::PendingWrite{item.ref.batch, b ? b->version : 0,
                                            b ? b->state : tasks::PendingState{}};
      }
      w->second.after.hold(item.ref.index, tasks::Held{chunk.worker, chunk.name});
    }
  }
  auto builder = tasks::v2::Builder::fenced(layout_, epoch_);
  for (auto& [batch, write] : writes) {
    builder.takeFrom(write);
    pending_->begin(batch);
    flight->writes.push_back(std::move(write));
  }
  for (const auto& chunk : round.chunks) {
    builder.assign({}, chunk.worker, chunk.name, chunk.chunk, now);
    if (auto* w = workers_->find(chunk.worker)) w->reserved += chunk.chunk.items.size();
  }
  auto multi = std::move(builder).finish();
  flight->decoder = std::move(multi.decoder);
  flight->round = std::move(round);
  round_inflight_ = true;
  coord_.multi(std::move(multi.ops))
      .then([gate = gate_, this, flight](const Result<std::vector<coord::OpResult>>& r) {
        postVia(gate, this, [this, flight, r] { onSent(flight, r); });
      });
}

void BatchScheduler::onSent(const std::shared_ptr<InFlight>& flight,
                            const Result<std::vector<coord::OpResult>>& r) {
  round_inflight_ = false;
  for (const auto& chunk : flight->round.chunks) {
    if (auto* w = workers_->find(chunk.worker)) w->reserved -= chunk.chunk.items.size();
  }
  if (r) {
    read_failures_ = 0;
    for (const auto& w : flight->writes) {
      pending_->wrote(w.batch, w.version, w.after);
      pending_->end(w.batch);
    }
    std::set<std::string> gone;
    for (auto& chunk : flight->round.chunks) {
      if (!workers_->find(chunk.worker)) gone.insert(chunk.worker);  // died meanwhile
      workers_->created(chunk.worker, chunk.name, std::move(chunk.chunk));
    }
    ++counters_.batches;
    counters_.assigned_total += flight->round.tasks;
    for (const auto& w : gone) requeue_->requeueWorker(w);
    pump();
    return;
  }
  ++counters_.batch_failures;
  for (const auto& w : flight->writes) pending_->end(w.batch);
  for (const auto& chunk : flight->round.chunks) pending_->restore(chunk.entries);
  if (fenced_) return;
  const Error& e = r.error();
  if (e.sessionLost()) return fence("session expired");
  if (e.code() == Code::kClosing) return fence("session closed");
  auto role = flight->decoder.failed(e);
  if (role && role->part == tasks::v2::Part::kEpoch) return fence("epoch moved");
  if (role && role->part == tasks::v2::Part::kPending) {
    pending_->reread(role->key);  // changed since read (a retry, a cancel): decide again
  } else if (role && role->part == tasks::v2::Part::kChunk && e.code() == Code::kNodeExists) {
    chunk_n_ += 1000;  // a name of ours is taken (an earlier multi that seemed to fail)
  } else if (role) {
    spdlog::warn("scheduler: assign multi failed on its {} ({}): {}",
                 tasks::v2::partName(role->part), role->key, e.toString());
    workers_->follow();
  } else {
    // Outcome unknown: the tree tells. Re-read what the multi wrote.
    for (const auto& w : flight->writes) pending_->reread(w.batch);
    for (const auto& chunk : flight->round.chunks) workers_->reread(chunk.worker, chunk.name);
  }
  pauseFor(retryDelay());
}

void BatchScheduler::pauseFor(base::Duration delay) {
  paused_ = true;
  later(delay, [this] {
    paused_ = false;
    pump();
  });
}

}  // namespace drover::scheduler

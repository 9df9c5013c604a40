#include "scheduler/scheduler.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "coord/paths.h"
#include "tasks/transitions.h"

namespace drover::scheduler {

using coord::Code;
using coord::Error;
using coord::Node;
using coord::Op;
using coord::OpResult;
using coord::Result;
using coord::Watcher;

namespace {}  // namespace

Scheduler::Scheduler(coord::Coordination& coord, tasks::Layout layout, Options options,
                     int32_t epoch, FencedCallback on_fenced)
    : coord_(coord),
      layout_(std::move(layout)),
      options_(std::move(options)),
      epoch_(epoch),
      on_fenced_(std::move(on_fenced)),
      picker_(makePicker(options_.strategy)),
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
          [this] { return retryDelay(); }},
      executor_(std::make_unique<base::ThreadExecutor>("scheduler")) {
  if (!picker_) {
    spdlog::warn("scheduler: unknown strategy '{}', using least-loaded", options_.strategy);
    picker_ = std::make_unique<LeastLoadedPicker>();
  }
  gate_->executor = executor_.get();
  requeuer_ =
      std::make_unique<Requeuer>(ctx_, options_.orphan_dir_grace,
                                 [this](const std::string& w) { return workers_.count(w) != 0; });
  queues_ = std::make_unique<QueueBoard>(ctx_, [this] { pump(); });
  cleanup_ = std::make_unique<Cleanup>(
      coord_, layout_,
      Cleanup::Options{options_.events_keep, options_.retention_age, options_.retention_count,
                       options_.retention_reads_per_sweep},
      [gate = gate_, this](std::function<void()> fn) { postVia(gate, this, std::move(fn)); },
      [this] { return active(); });
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::start() {
  std::call_once(started_, [this] {
    std::weak_ptr<Gate> weak = gate_;
    listener_id_ = coord_.addSessionListener([this, weak](const coord::SessionEvent& event) {
      auto gate = weak.lock();
      if (!gate) return;
      std::lock_guard lock(gate->mu);
      if (gate->executor) {
        gate->executor->post([this, event] {
          onSession(event);
          publish();
        });
      }
    });
    post([this] { begin(); });
  });
}

void Scheduler::stop() {
  std::call_once(stopped_, [this] {
    {
      std::lock_guard lock(gate_->mu);
      gate_->executor = nullptr;
    }
    if (listener_id_ != 0) coord_.removeSessionListener(listener_id_);
    {
      std::lock_guard lock(stats_mu_);
      stats_.running = false;
    }
    if (executor_->isCurrent()) {
      running_ = false;  // from on_fenced: the thread ends after this task
    }
  });
  if (!executor_->isCurrent()) {
    executor_->stop();
    // A task that was running during the first update may have published "running" since.
    std::lock_guard lock(stats_mu_);
    stats_.running = false;
  }
}

void Scheduler::reconcile() {
  post([this] { fullReconcile(); });
}

Scheduler::Stats Scheduler::snapshot() const {
  std::lock_guard lock(stats_mu_);
  return stats_;
}

void Scheduler::post(std::function<void()> fn) { postVia(gate_, this, std::move(fn)); }

void Scheduler::postVia(const std::shared_ptr<Gate>& gate, Scheduler* self,
                        std::function<void()> fn) {
  std::lock_guard lock(gate->mu);
  if (!gate->executor) return;  // stopped: `self` may be gone, so it is not touched
  gate->executor->post([self, fn = std::move(fn)] {
    fn();
    self->publish();
  });
}

base::TimerId Scheduler::later(base::Duration delay, std::function<void()> fn) {
  std::lock_guard lock(gate_->mu);
  if (!gate_->executor) return 0;
  return gate_->executor->postAfter(delay, [this, fn = std::move(fn)] {
    fn();
    publish();
  });
}

void Scheduler::publish() {
  Stats s = counters_;
  s.requeued_total = requeuer_->requeued();
  s.failed_total = requeuer_->failed();
  if (cleanup_) {
    s.events_trimmed = cleanup_->eventsTrimmed();
    s.statuses_deleted = cleanup_->statusesDeleted();
  }
  s.running = running_;
  s.fenced = fenced_;
  s.pending = jobs_.ready();
  s.delayed = jobs_.delayed();
  s.pending_by_priority = jobs_.readyByPriority();
  s.workers = loads();
  std::lock_guard lock(stats_mu_);
  stats_ = std::move(s);
}

void Scheduler::fence(const std::string& reason) {
  if (fenced_) return;
  fenced_ = true;
  counters_.fenced = true;
  counters_.fenced_reason = reason;
  counters_.fenced_count = 1;
  spdlog::warn("scheduler: fenced ({}), stepping down", reason);
  if (sweep_timer_ != 0) executor_->cancel(sweep_timer_);
  if (delay_timer_ != 0) executor_->cancel(delay_timer_);
  if (relist_timer_ != 0) executor_->cancel(relist_timer_);
  sweep_timer_ = delay_timer_ = relist_timer_ = 0;
  publish();
  if (on_fenced_) on_fenced_(reason);
}

base::Duration Scheduler::retryDelay() {
  read_failures_ = std::min<uint32_t>(read_failures_ + 1, 16);
  return options_.retry_backoff.delay(read_failures_, read_failures_);
}

void Scheduler::onReadError(const Error& error, std::function<void()> retry) {
  if (error.sessionLost()) {
    fence("session expired");
    return;
  }
  if (error.code() == Code::kClosing) {
    fence("session closed");
    return;
  }
  spdlog::debug("scheduler: read failed ({}), retrying", error.toString());
  later(retryDelay(), [this, retry = std::move(retry)] {
    if (active()) retry();
  });
}

// --- Start, sweep, session ---

void Scheduler::begin() {
  if (fenced_) return;
  running_ = true;
  connected_ = coord_.session().state == coord::SessionState::kConnected;
  spdlog::info("scheduler: leading with epoch version {}", epoch_);
  fullReconcile();
  scheduleSweep();
  later(options_.first_assign_after, [this] {
    if (!active() || initial_loaded_) return;
    spdlog::info("scheduler: first scan still loading ({} jobs so far); assigning meanwhile",
                 jobs_.size());
    assign_early_ = true;
    pump();
  });
}

void Scheduler::fullReconcile() {
  if (!active()) return;
  listWorkers();
  queues_->follow();
  for (auto& [w, entry] : workers_) listAssignments(w);
  for (int i = 0; i < tasks::Layout::kJobBuckets; ++i) listBucket(i);
}

void Scheduler::scheduleSweep() {
  sweep_timer_ = later(options_.sweep_interval, [this] {
    sweep_timer_ = 0;
    sweep();
  });
}

void Scheduler::sweep() {
  if (!active()) return;
  ++sweeps_;
  if (options_.reconcile_every <= 1 || sweeps_ % options_.reconcile_every == 0) fullReconcile();
  cleanup_->trimEvents();
  if (cleanup_->behind() || options_.retention_every <= 1 ||
      sweeps_ % options_.retention_every == 0) {
    cleanup_->applyRetention();
  }
  scheduleSweep();
}

void Scheduler::onSession(const coord::SessionEvent& event) {
  if (!active()) return;
  switch (event.state) {
    case coord::SessionState::kExpired:
      fence("session expired");
      break;
    case coord::SessionState::kClosed:
      fence("session closed");
      break;
    case coord::SessionState::kDisconnected:
      connected_ = false;
      break;
    case coord::SessionState::kConnected:
      if (!connected_) {
        connected_ = true;
        paused_ = false;
        fullReconcile();  // settles whatever was in flight when the connection dropped
      }
      break;
    case coord::SessionState::kConnecting:
      break;
  }
}

// --- Workers ---

void Scheduler::listWorkers() {
  Watcher watcher;
  if (!workers_watch_armed_) {
    workers_watch_armed_ = true;
    watcher = [gate = gate_, this](const coord::WatchEvent&) {
      postVia(gate, this, [this] {
        workers_watch_armed_ = false;
        if (active()) listWorkers();
      });
    };
  }
  coord_.children(layout_.workers(), std::move(watcher))
      .then([gate = gate_, this,
             watched = static_cast<bool>(watcher)](const Result<std::vector<std::string>>& r) {
        postVia(gate, this, [this, r, watched] {
          if (!r && watched) workers_watch_armed_ = false;
          onWorkers(r);
        });
      });
}

void Scheduler::onWorkers(const Result<std::vector<std::string>>& r) {
  if (!active()) return;
  if (!r) {
    onReadError(r.error(), [this] { listWorkers(); });
    return;
  }
  read_failures_ = 0;
  std::set<std::string> live(r->begin(), r->end());
  std::vector<std::string> dead;
  for (const auto& [w, entry] : workers_) {
    if (!live.count(w)) dead.push_back(w);
  }
  for (const auto& w : dead) {
    spdlog::info("scheduler: worker {} left, requeueing its assignments", w);
    workers_.erase(w);
    queues_->forget(w);
    requeueWorker(w);
  }
  for (const auto& w : live) {
    if (workers_.count(w)) continue;
    workers_[w].info.id = w;
    loadWorkerInfo(w);
    listAssignments(w);
  }
  listAssignmentRoots();
  pump();
}

void Scheduler::loadWorkerInfo(const std::string& w) {
  coord_.get(layout_.worker(w), nullptr).then([gate = gate_, this, w](const Result<Node>& r) {
    postVia(gate, this, [this, w, r] {
      if (!active()) return;
      auto it = workers_.find(w);
      if (it == workers_.end()) return;
      if (!r) {
        if (r.error().code() == Code::kNoNode) return;  // gone; the /workers watch tells
        onReadError(r.error(), [this, w] {
          if (workers_.count(w)) loadWorkerInfo(w);
        });
        return;
      }
      auto json = tasks::parseJson(r->data);
      auto info = json ? tasks::workerFromJson(*json) : std::nullopt;
      if (!info) {
        spdlog::error("scheduler: unreadable /workers/{}; not assigning to it", w);
        return;
      }
      info->id = w;
      it->second.info = std::move(*info);
      it->second.info_loaded = true;
      pump();
    });
  });
}

void Scheduler::listAssignments(const std::string& w) {
  auto it = workers_.find(w);
  if (it == workers_.end()) return;
  Watcher watcher;
  if (!it->second.watch_armed) {
    it->second.watch_armed = true;
    watcher = [gate = gate_, this, w](const coord::WatchEvent&) {
      postVia(gate, this, [this, w] {
        auto it = workers_.find(w);
        if (it == workers_.end()) return;
        it->second.watch_armed = false;
        if (active()) listAssignments(w);
      });
    };
  }
  bool watched = static_cast<bool>(watcher);
  uint64_t seq = ++it->second.lists_issued;
  coord_.children(layout_.assignmentsOf(w), std::move(watcher))
      .then([gate = gate_, this, w, watched, seq](const Result<std::vector<std::string>>& r) {
        postVia(gate, this, [this, w, r, watched, seq] { onAssignments(w, r, watched, seq); });
      });
}

void Scheduler::onAssignments(const std::string& w, const Result<std::vector<std::string>>& r,
                              bool watched, uint64_t seq) {
  auto it = workers_.find(w);
  if (it == workers_.end() || !active()) return;  // a dead worker's are requeueWorker()'s
  WorkerEntry& entry = it->second;
  if (!r) {
    if (watched) entry.watch_armed = false;
    if (r.error().code() == Code::kNoNode) {
      // The worker has not made its folder yet: do not assign to it until it has.
      entry.listed = false;
      entry.tasks.clear();
    }
    onReadError(r.error(), [this, w] { listAssignments(w); });
    return;
  }
  read_failures_ = 0;
  entry.lists_seen = std::max(entry.lists_seen, seq);
  entry.tasks = std::set<std::string>(r->begin(), r->end());
  // A listing sent before one of our assign multis cannot show that assignment: keep it counted
  // (else the worker's slots look free and get overfilled). A listing sent after the multi is
  // the truth for it (the session's requests are ordered), so it is forgotten then. Counting
  // from the moment the multi landed instead would keep a task that the worker finished between
  // the landing and a listing sent before we learned of the landing: a phantom that holds the
  // slot until the worker's folder changes again.
  for (auto l = entry.landed.begin(); l != entry.landed.end();) {
    if (seq <= l->second) {
      entry.tasks.insert(l->first);
      ++l;
    } else {
      l = entry.landed.erase(l);
    }
  }
  entry.listed = true;
  noteHeld(w);
  pump();
}

void Scheduler::noteHeld(const std::string& w) {
  auto it = workers_.find(w);
  if (it != workers_.end()) queues_->held(w, it->second.tasks);
}

void Scheduler::listAssignmentRoots() {
  coord_.children(layout_.assignments(), nullptr)
      .then([gate = gate_, this](const Result<std::vector<std::string>>& r) {
        postVia(gate, this, [this, r] {
          if (!active()) return;
          if (!r) {
            onReadError(r.error(), [this] { listAssignmentRoots(); });
            return;
          }
          for (const auto& w : *r) {
            if (!workers_.count(w)) requeueWorker(w);
          }
        });
      });
}

// --- Requeue of a dead worker's assignments ---

// --- Jobs ---

void Scheduler::listBucket(int bucket) {
  Watcher watcher;
  if (!bucket_armed_[bucket]) {
    bucket_armed_[bucket] = true;
    watcher = [gate = gate_, this, bucket](const coord::WatchEvent&) {
      postVia(gate, this, [this, bucket] {
        bucket_armed_[bucket] = false;
        if (active()) bucketChanged(bucket);  // only the bucket that fired
      });
    };
  }
  bool watched = static_cast<bool>(watcher);
  ++loading_;
  coord_.children(layout_.jobBucketAt(bucket), std::move(watcher))
      .then([gate = gate_, this, bucket, watched](const Result<std::vector<std::string>>& r) {
        postVia(gate, this, [this, bucket, watched, r] { onBucket(bucket, r, watched); });
      });
}

void Scheduler::bucketChanged(int bucket) {
  if (jobs_.ready() < options_.relist_ready_below) {
    listBucket(bucket);
    return;
  }
  dirty_buckets_.insert(bucket);
  if (relist_timer_ == 0) {
    auto by_size = std::chrono::duration_cast<base::Duration>(std::chrono::microseconds(50) *
                                                              static_cast<int64_t>(jobs_.ready()));
    auto delay = std::min(options_.relist_delay_max, std::max(options_.relist_delay, by_size));
    relist_timer_ = later(delay, [this] {
      relist_timer_ = 0;
      relistDirty();
    });
  }
}

void Scheduler::relistDirty() {
  if (!active()) return;
  std::set<int> dirty;
  dirty.swap(dirty_buckets_);
  for (int b : dirty) listBucket(b);
}

void Scheduler::onBucket(int bucket, const Result<std::vector<std::string>>& r, bool watched) {
  if (!active()) return;
  LoadDone load_done(*this);
  if (!r) {
    if (watched) bucket_armed_[bucket] = false;
    onReadError(r.error(), [this, bucket] { listBucket(bucket); });
    return;
  }
  read_failures_ = 0;
  std::set<std::string> listed(r->begin(), r->end());
  auto& known = bucket_known_[bucket];
  for (auto it = known.begin(); it != known.end();) {
    if (listed.count(*it)) {
      ++it;
      continue;
    }
    jobs_.drop(*it);  // taken, cancelled, or assigned by us
    it = known.erase(it);
  }
  for (const auto& id : listed) {
    if (known.insert(id).second) fetchJob(bucket, id);
  }
}

void Scheduler::fetchJob(int bucket, const std::string& id) {
  // A job carries what the assign keeps from the status (submitted_at, the last error), so one
  // read is enough once the leader runs. Its first full scan (and any job written by an older
  // version, which lacks those fields) reads the status too: a new leader checks every job it
  // finds against its status once, and deletes leftovers of finished tasks (trees damaged by
  // hand or by older versions). After that, the token rule keeps jobs and terminal statuses
  // apart: every write that ends a task consumes its token in the same multi.
  ++loading_;  // until onFetched
  fetch_queue_.emplace_back(bucket, id);
  sendFetches();
}

void Scheduler::sendFetches() {
  while (fetches_inflight_ < options_.max_fetches_inflight && !fetch_queue_.empty()) {
    auto [bucket, id] = std::move(fetch_queue_.front());
    fetch_queue_.pop_front();
    ++fetches_inflight_;
    sendFetch(bucket, id);
  }
}

void Scheduler::sendFetch(int bucket, const std::string& id) {
  if (!initial_loaded_) {
    // The first scan: job and status, pipelined.
    struct Reads {
      std::optional<Result<Node>> job;
      std::optional<Result<Node>> status;
    };
    auto reads = std::make_shared<Reads>();
    auto done = [this, bucket, id, reads] {
      if (reads->job && reads->status) onFetched(bucket, id, *reads->job, *reads->status);
    };
    coord_.get(layout_.job(id), nullptr)
        .then([gate = gate_, this, reads, done](const Result<Node>& r) {
          postVia(gate, this, [reads, done, r] {
            reads->job = r;
            done();
          });
        });
    coord_.get(layout_.status(id), nullptr)
        .then([gate = gate_, this, reads, done](const Result<Node>& r) {
          postVia(gate, this, [reads, done, r] {
            reads->status = r;
            done();
          });
        });
    return;
  }
  coord_.get(layout_.job(id), nullptr)
      .then([gate = gate_, this, bucket, id](const Result<Node>& r) {
        postVia(gate, this, [this, bucket, id, r] {
          auto json = r ? tasks::parseJson(r->data) : std::nullopt;
          auto job = json ? tasks::jobFromJson(*json) : std::nullopt;
          if (r && (!job || !job->has_status)) {
            fetchStatus(bucket, id, r);  // an older writer's job: the status has the rest
            return;
          }
          onFetched(bucket, id, r, tl::unexpected(Error(Code::kNoNode, "not read")));
        });
      });
}

void Scheduler::fetchStatus(int bucket, const std::string& id, const Result<Node>& job) {
  coord_.get(layout_.status(id), nullptr)
      .then([gate = gate_, this, bucket, id, job](const Result<Node>& r) {
        postVia(gate, this, [this, bucket, id, job, r] { onFetched(bucket, id, job, r); });
      });
}

void Scheduler::onFetched(int bucket, const std::string& id, const Result<Node>& job_read,
                          const Result<Node>& status_read) {
  --fetches_inflight_;
  sendFetches();
  if (!active()) return;
  LoadDone load_done(*this);
  auto& known = bucket_known_[bucket];
  if (!known.count(id)) return;  // a later listing says it went meanwhile
  if (!job_read || (!status_read && status_read.error().code() != Code::kNoNode)) {
    const Error& e = job_read ? status_read.error() : job_read.error();
    known.erase(id);
    if (e.code() == Code::kNoNode) return;  // the job went between listing and get
    onReadError(e, [this, bucket] { listBucket(bucket); });
    return;
  }
  auto job_json = tasks::parseJson(job_read->data);
  auto job = job_json ? tasks::jobFromJson(*job_json) : std::nullopt;
  if (!job || job->spec.id != id) {
    spdlog::error("scheduler: unreadable job {}; skipped", id);
    return;  // stays known, so it is not re-read on every listing
  }
  JobEntry entry;
  entry.job = std::move(*job);
  entry.version = job_read->stat.version;
  entry.czxid = job_read->stat.czxid;
  entry.bucket = bucket;
  if (entry.job.has_status && !status_read) {
    // Not read (see fetchJob): everything the assign writes comes from the job.
    entry.submitted_at = entry.job.submitted_at;
    entry.error = entry.job.error;
    addJob(std::move(entry));
    pump();
    return;
  }
  std::optional<tasks::TaskStatus> status;
  if (status_read) {
    auto s_json = tasks::parseJson(status_read->data);
    if (s_json) status = tasks::statusFromJson(*s_json);
  }
  if (status && tasks::isTerminal(status->state)) {
    // A job left behind by a finished task: delete the token, nothing else.
    std::vector<Op> ops{coord::CheckOp{layout_.epoch(), epoch_},
                        coord::DeleteOp{layout_.job(id), entry.version}};
    coord_.multi(std::move(ops)).then([gate = gate_, this](const Result<std::vector<OpResult>>& r) {
      postVia(gate, this, [this, r] {
        if (!r && r.error().failedOp() == 0) fence("epoch moved");
        if (!r && r.error().sessionLost()) fence("session expired");
      });
    });
    return;
  }
  if (!status_read) {
    // Submit creates both in one multi, so this tree was damaged by hand. The assign's status
    // set would fail on it: leave the job for an operator (it stays known, so it is not re-read
    // on every listing).
    spdlog::error("scheduler: job {} has no status; not assigning it", id);
    return;
  }
  if (!status) {
    spdlog::warn("scheduler: status of job {} is unreadable; rewriting it on assign", id);
    status.emplace();
    status->spec = entry.job.spec;
  }
  entry.submitted_at = status->submitted_at;
  entry.error = std::move(status->error);
  addJob(std::move(entry));
  pump();
}

void Scheduler::addJob(JobEntry entry) {
  bool delayed = entry.job.not_before > 0;
  jobs_.add(std::move(entry), base::wallMillis());
  if (delayed) armDelayTimer();
}

void Scheduler::armDelayTimer() {
  auto next = jobs_.nextDue();
  if (!next) return;
  int64_t due = *next;
  if (delay_timer_ != 0 && delay_timer_due_ <= due) return;
  if (delay_timer_ != 0) executor_->cancel(delay_timer_);
  int64_t wait_ms = std::max<int64_t>(0, due - base::wallMillis()) + 1;
  delay_timer_due_ = due;
  delay_timer_ = later(base::milliseconds(wait_ms), [this] {
    delay_timer_ = 0;
    onDelayTimer();
  });
}

void Scheduler::onDelayTimer() {
  if (!active()) return;
  jobs_.promote(base::wallMillis());
  armDelayTimer();
  pump();
}

// --- Assignment ---

std::vector<WorkerLoad> Scheduler::loads() const {
  std::vector<WorkerLoad> out;
  for (const auto& [w, entry] : workers_) {
    if (!entry.info_loaded || !entry.listed) continue;
    out.push_back(WorkerLoad{w, entry.info.slots,
                             static_cast<int>(entry.tasks.size()) + entry.reserved,
                             entry.info.labels, entry.info.prefetch,
                             WorkerRouting{entry.info.queues, entry.info.labels, entry.info.types,
                                           queues_->draining(w)}});
  }
  return out;
}

Scheduler::LoadDone::~LoadDone() {
  if (--s.loading_ == 0 && !s.initial_loaded_) {
    // The first full scan is in: assign now, in priority order over the whole backlog.
    s.initial_loaded_ = true;
    s.pump();
  }
}

void Scheduler::pump() {
  if (!active() || !connected_ || paused_ || !(initial_loaded_ || assign_early_)) return;
  while (inflight_batches_ < options_.max_inflight_batches && jobs_.ready() > 0) {
    std::vector<WorkerLoad> workers = loads();
    if (workers.empty()) return;
    Batch batch;
    tasks::Txn txn = tasks::Txn::fenced(layout_, epoch_);
    int64_t now = base::wallMillis();
    // Routing (docs/ROUTING.md): a route's workers are matched once per round; a route that
    // cannot take a task now (no capable worker with room, its queue paused or full) is set
    // aside for the round instead of holding up the routes behind it.
    std::set<Route> blocked;
    std::map<Route, std::vector<size_t>> eligible;
    std::map<std::string, int> taken;  // per queue, in this round
    while (const JobEntry* next = jobs_.nextExcept(blocked)) {
      const JobEntry& entry = *next;
      Route route = routeOf(entry.job.spec);
      auto [match, fresh] = eligible.try_emplace(route);
      if (fresh) {
        for (size_t i = 0; i < workers.size(); ++i) {
          if (serves(workers[i].routing, route)) match->second.push_back(i);
        }
      }
      if (match->second.empty() || !queues_->open(route.queue, taken[route.queue])) {
        blocked.insert(std::move(route));
        continue;
      }
      std::vector<WorkerLoad> candidates;
      candidates.reserve(match->second.size());
      for (size_t i : match->second) candidates.push_back(workers[i]);
      auto pick = picker_->pick(candidates, entry.job.spec);
      if (!pick) {  // no capable worker has room
        blocked.insert(std::move(route));
        continue;
      }
      WorkerLoad& chosen = workers[match->second[*pick]];
      const std::string& w = chosen.id;
      tasks::Job job = entry.job;
      job.submitted_at = entry.submitted_at;
      job.error = entry.error;
      tasks::TaskOps part = tasks::assign(layout_, job, entry.version, w, now);
      if (!txn.fits(part, options_.max_batch_tasks, options_.max_batch_bytes)) break;
      txn.add(std::move(part));
      ++chosen.assigned;
      ++workers_[w].reserved;
      ++taken[route.queue];
      uint64_t lists_at_send = workers_[w].lists_issued;
      const std::string id = entry.job.spec.id;  // `entry` goes with the take
      queues_->assigned(id, route.queue);
      batch.items.push_back(BatchItem{w, jobs_.take(id), lists_at_send});
    }
    if (batch.items.empty()) break;
    auto t = std::move(txn).finish();
    batch.decoder = std::move(t.decoder);
    sendBatch(std::move(batch), std::move(t.ops));
  }
  if (!dirty_buckets_.empty() && jobs_.ready() < options_.relist_ready_below) {
    if (relist_timer_ != 0) executor_->cancel(relist_timer_);
    relist_timer_ = 0;
    relistDirty();
  }
}

void Scheduler::sendBatch(Batch batch, std::vector<Op> ops) {
  ++inflight_batches_;
  auto shared = std::make_shared<Batch>(std::move(batch));
  coord_.multi(std::move(ops))
      .then([gate = gate_, this, shared](const Result<std::vector<OpResult>>& r) {
        postVia(gate, this, [this, shared, r] { onBatchDone(std::move(*shared), r); });
      });
}

void Scheduler::onBatchDone(Batch batch, const Result<std::vector<OpResult>>& r) {
  --inflight_batches_;
  for (const auto& item : batch.items) {
    if (auto it = workers_.find(item.worker); it != workers_.end()) --it->second.reserved;
  }
  if (fenced_) return;
  if (r) {
    ++counters_.batches;
    counters_.assigned_total += batch.items.size();
    std::set<std::string> gone;
    for (auto& item : batch.items) {
      // Forget the id, so that a later job for it (a requeue, a retry) is read afresh.
      bucket_known_[item.entry.bucket].erase(item.entry.job.spec.id);
      auto it = workers_.find(item.worker);
      if (it == workers_.end()) {
        gone.insert(item.worker);  // it died while the multi was in flight
      } else if (it->second.lists_seen <= item.lists_at_send) {
        // No listing sent after the multi has come back yet: count the task until one does.
        it->second.tasks.insert(item.entry.job.spec.id);
        it->second.landed[item.entry.job.spec.id] = item.lists_at_send;
      }
      // Else a listing sent after the multi (the session's requests are ordered) already said
      // whether the task is there: it may even be finished and gone, so it is not re-added.
    }
    std::set<std::string> touched;
    std::vector<std::string> ids;
    for (const auto& item : batch.items) {
      touched.insert(item.worker);
      ids.push_back(item.entry.job.spec.id);
    }
    for (const auto& w : touched) noteHeld(w);
    queues_->settled(ids);
    for (const auto& w : gone) requeueWorker(w);
    pump();
    return;
  }

  ++counters_.batch_failures;
  {
    std::vector<std::string> ids;
    for (const auto& item : batch.items) ids.push_back(item.entry.job.spec.id);
    queues_->settled(ids);
  }
  const Error& e = r.error();
  if (e.sessionLost()) return fence("session expired");
  if (e.code() == Code::kClosing) return fence("session closed");
  const auto failed = batch.decoder.failed(e);
  if (failed && failed->step == tasks::Step::kEpoch) return fence("epoch moved");
  size_t n = batch.items.size();
  if (failed && failed->step != tasks::Step::kEvent) {
    size_t t = failed->task;
    BatchItem& bad = batch.items[t];
    const std::string id = bad.entry.job.spec.id;
    auto& known = bucket_known_[bad.entry.bucket];
    bool retry_bad = false;
    if (failed->step == tasks::Step::kToken) {
      // NoNode: cancelled or taken since we read it. BadVersion: rewritten; read it again.
      known.erase(id);
      if (e.code() != Code::kNoNode) listBucket(bad.entry.bucket);
    } else if (failed->step == tasks::Step::kAssignment && e.code() == Code::kNoNode) {
      // The worker's folder is gone: keep the task, and re-learn the worker.
      retry_bad = true;
      if (auto it = workers_.find(bad.worker); it != workers_.end()) {
        it->second.listed = false;
        listAssignments(bad.worker);
      }
    } else {
      // An assignment already exists (NodeExists) or the status is missing: the tree breaks
      // the token rule for this task. Leave it for an operator; it stays known so it is not
      // retried on every listing, and a later listing that lacks it forgets it.
      spdlog::error("scheduler: cannot assign {} (its {} op failed: {}); skipping it", id,
                    tasks::stepName(failed->step), e.toString());
    }
    for (size_t i = 0; i < n; ++i) {
      if (i != t || retry_bad) addJob(std::move(batch.items[i].entry));
    }
    pump();
    return;
  }
  if (failed) {
    // The event op failed: not a per-task problem. Put everything back and try later.
    spdlog::error("scheduler: assign batch failed on its event op: {}", e.toString());
    for (auto& item : batch.items) addJob(std::move(item.entry));
    paused_ = true;
    later(retryDelay(), [this] {
      paused_ = false;
      pump();
    });
    return;
  }
  // Outcome unknown (connection loss, timeout, ...): forget these tasks and re-read their
  // buckets and workers once the connection is back; the tokens tell what happened.
  std::set<int> buckets;
  std::set<std::string> workers;
  for (const auto& item : batch.items) {
    bucket_known_[item.entry.bucket].erase(item.entry.job.spec.id);
    buckets.insert(item.entry.bucket);
    workers.insert(item.worker);
  }
  paused_ = true;
  later(retryDelay(), [this, buckets, workers] {
    paused_ = false;
    if (!active()) return;
    for (const auto& w : workers) listAssignments(w);
    for (int b : buckets) listBucket(b);
    pump();
  });
}

}  // namespace drover::scheduler

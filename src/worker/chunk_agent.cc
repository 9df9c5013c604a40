#include "worker/chunk_agent.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>

#include "base/clock.h"

namespace drover::worker {
namespace {

using coord::Code;

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

}  // namespace drover::worker

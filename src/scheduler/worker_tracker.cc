#include "scheduler/worker_tracker.h"

#include <spdlog/spdlog.h>

#include <utility>

namespace drover::scheduler {

using coord::Code;
using coord::Node;
using coord::Result;

bool WorkerTracker::Worker::ready() const {
  if (!info_loaded || !listed) return false;
  for (const auto& [name, c] : chunks) {
    if (c.version < 0) return false;
  }
  return true;
}

int WorkerTracker::Worker::held() const {
  int n = reserved;
  for (const auto& [name, c] : chunks) n += static_cast<int>(c.chunk.items.size());
  return n;
}

WorkerTracker::WorkerTracker(const LeaderContext& ctx, std::function<void()> changed,
                             std::function<void(const std::string&)> gone)
    : ctx_(ctx), changed_(std::move(changed)), gone_(std::move(gone)) {}

WorkerTracker::Worker* WorkerTracker::find(const std::string& w) {
  auto it = workers_.find(w);
  return it == workers_.end() ? nullptr : &it->second;
}

void WorkerTracker::follow() {
  listWorkers();
  for (auto& [w, worker] : workers_) listChunks(w);
}

void WorkerTracker::listWorkers() {
  coord::Watcher watcher;
  if (!watch_) {
    watch_ = true;
    watcher = [this, post = ctx_.post](const coord::WatchEvent&) {
      post([this] {
        watch_ = false;
        if (ctx_.active()) listWorkers();
      });
    };
  }
  ctx_.coord.children(ctx_.layout.workers(), std::move(watcher))
      .then([this, post = ctx_.post](const Result<std::vector<std::string>>& r) {
        post([this, r] {
          if (!ctx_.active()) return;
          if (!r) {
            watch_ = false;
            ctx_.on_read_error(r.error(), [this] { listWorkers(); });
            return;
          }
          std::set<std::string> live(r->begin(), r->end());
          std::vector<std::string> dead;
          for (const auto& [w, worker] : workers_) {
            if (!live.count(w)) dead.push_back(w);
          }
          for (const auto& w : dead) {
            spdlog::info("scheduler: worker {} left, requeueing its chunks", w);
            workers_.erase(w);
            gone_(w);
          }
          for (const auto& w : live) {
            if (workers_.count(w)) continue;
            workers_[w].info.id = w;
            loadInfo(w);
            listChunks(w);
          }
          bool first = !loaded_;
          loaded_ = true;
          if (first) listFolders();
          changed_();
        });
      });
}

void WorkerTracker::loadInfo(const std::string& w) {
  Worker* worker = find(w);
  if (!worker) return;
  coord::Watcher watcher;
  if (!worker->info_watched) {
    worker->info_watched = true;
    watcher = [this, w, post = ctx_.post](const coord::WatchEvent&) {
      post([this, w] {
        Worker* worker = find(w);
        if (!worker || !ctx_.active()) return;
        worker->info_watched = false;
        loadInfo(w);  // `running` changed, or the worker re-registered
      });
    };
  }
  ctx_.coord.get(ctx_.layout.worker(w), std::move(watcher))
      .then([this, w, post = ctx_.post](const Result<Node>& r) {
        post([this, w, r] {
          Worker* worker = find(w);
          if (!worker || !ctx_.active()) return;
          if (!r) {
            worker->info_watched = false;
            if (r.error().code() == Code::kNoNode) return;  // gone: the /workers watch tells
            ctx_.on_read_error(r.error(), [this, w] { loadInfo(w); });
            return;
          }
          auto json = tasks::parseJson(r->data);
          auto info = json ? tasks::workerFromJson(*json) : std::nullopt;
          if (!info) {
            spdlog::error("scheduler: unreadable /workers/{}; not assigning to it", w);
            return;
          }
          info->id = w;
          worker->info = std::move(*info);
          worker->info_loaded = true;
          changed_();
        });
      });
}

void WorkerTracker::listChunks(const std::string& w) {
  ctx_.coord.children(ctx_.layout.assignmentsOf(w), nullptr)
      .then([this, w, post = ctx_.post](const Result<std::vector<std::string>>& r) {
        post([this, w, r] {
          Worker* worker = find(w);
          if (!worker || !ctx_.active()) return;
          if (!r) {
            // NoNode: the worker has not made its folder yet; assign nothing until it has.
            ctx_.on_read_error(r.error(), [this, w] { listChunks(w); });
            return;
          }
          for (const auto& name : *r) {
            if (worker->chunks.count(name)) continue;
            worker->chunks[name];
            readChunk(w, name);
          }
          worker->listed = true;
          changed_();
        });
      });
}

coord::Watcher WorkerTracker::chunkWatcher(const std::string& w, const std::string& name) {
  return [this, w, name, post = ctx_.post](const coord::WatchEvent& event) {
    post([this, w, name, deleted = event.type == coord::EventType::kDeleted] {
      Worker* worker = find(w);
      if (!worker || !ctx_.active()) return;
      auto it = worker->chunks.find(name);
      if (it == worker->chunks.end()) return;
      if (deleted) {
        worker->chunks.erase(it);  // all of it committed (or requeued)
        changed_();
        return;
      }
      it->second.watched = false;
      readChunk(w, name);
    });
  };
}

void WorkerTracker::readChunk(const std::string& w, const std::string& name) {
  Worker* worker = find(w);
  if (!worker) return;
  auto it = worker->chunks.find(name);
  if (it == worker->chunks.end()) return;
  coord::Watcher watcher;
  if (!it->second.watched) {
    it->second.watched = true;
    watcher = chunkWatcher(w, name);
  }
  ctx_.coord.get(ctx_.layout.chunk(w, name), std::move(watcher))
      .then([this, w, name, post = ctx_.post](const Result<Node>& r) {
        post([this, w, name, r] {
          Worker* worker = find(w);
          if (!worker || !ctx_.active()) return;
          auto it = worker->chunks.find(name);
          if (it == worker->chunks.end()) return;
          if (!r) {
            it->second.watched = false;
            if (r.error().code() == Code::kNoNode) {
              worker->chunks.erase(it);
              changed_();
              return;
            }
            ctx_.on_read_error(r.error(), [this, w, name] { readChunk(w, name); });
            return;
          }
          if (r->stat.version < it->second.version) return;  // an older read
          auto chunk = tasks::decodeChunk(r->data);
          if (!chunk) {
            // Counted as full rather than empty: never overfill a worker on bad data.
            spdlog::error("scheduler: unreadable chunk {}/{}", w, name);
            chunk.emplace();
            chunk->items.resize(tasks::kMaxChunkTasks);
          }
          it->second.version = r->stat.version;
          it->second.chunk = std::move(*chunk);
          changed_();
        });
      });
}

void WorkerTracker::created(const std::string& w, const std::string& name, tasks::Chunk chunk) {
  Worker* worker = find(w);
  if (!worker) return;
  auto& c = worker->chunks[name];
  c.version = 0;
  c.chunk = std::move(chunk);
  c.watched = true;
  // Arms the data watch without reading back what we just wrote (decoding a chunk of inline
  // specs was a third of the leader's CPU); a worker that committed already shows as a newer
  // version (read then) or a missing node.
  ctx_.coord.exists(ctx_.layout.chunk(w, name), chunkWatcher(w, name))
      .then([this, w, name, post = ctx_.post](const Result<std::optional<coord::Stat>>& r) {
        post([this, w, name, r] {
          Worker* worker = find(w);
          if (!worker || !ctx_.active()) return;
          auto it = worker->chunks.find(name);
          if (it == worker->chunks.end()) return;
          if (r && !*r) {
            worker->chunks.erase(it);
            changed_();
          } else if (!r || (*r)->version != it->second.version) {
            if (!r) it->second.watched = false;
            readChunk(w, name);
          }
        });
      });
}

void WorkerTracker::rewrote(const std::string& w, const std::string& name, int32_t version,
                            tasks::Chunk chunk) {
  Worker* worker = find(w);
  if (!worker) return;
  auto it = worker->chunks.find(name);
  if (it == worker->chunks.end() || it->second.version != version) return reread(w, name);
  if (chunk.items.empty()) {
    worker->chunks.erase(it);
    return;
  }
  it->second.version = version + 1;
  it->second.chunk = std::move(chunk);
}

void WorkerTracker::reread(const std::string& w, const std::string& name) {
  Worker* worker = find(w);
  if (!worker) return;
  auto& c = worker->chunks[name];
  if (c.watched) {
    // A read with a watch is out or armed: a read without one refreshes the copy now.
    c.watched = false;
  }
  readChunk(w, name);
}

void WorkerTracker::listFolders() {
  ctx_.coord.children(ctx_.layout.assignments(), nullptr)
      .then([this, post = ctx_.post](const Result<std::vector<std::string>>& r) {
        post([this, r] {
          if (!ctx_.active()) return;
          if (!r) {
            ctx_.on_read_error(r.error(), [this] { listFolders(); });
            return;
          }
          for (const auto& w : *r) {
            if (!workers_.count(w)) gone_(w);
          }
        });
      });
}

std::vector<WorkerLoad> WorkerTracker::loads(
    const std::function<bool(const std::string&)>& draining) const {
  std::vector<WorkerLoad> out;
  out.reserve(workers_.size());
  for (const auto& [w, worker] : workers_) {
    if (!worker.ready()) continue;
    const auto& info = worker.info;
    out.push_back(WorkerLoad{w, info.slots, worker.held(), info.labels, info.prefetch,
                             WorkerRouting{info.queues, info.labels, info.types, draining(w)}});
  }
  return out;
}

}  // namespace drover::scheduler

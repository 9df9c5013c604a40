#pragma once

// Protocol v2: the leader's view of the workers. It follows /workers (child watch), each
// worker's record (data watch: slots, prefetch, routing, and `running`, the tasks it has
// started), and each worker's chunks under /assignments/{w}: a chunk is read once when found
// (or created by the leader) with a data watch, and read again only when the worker's commit
// rewrites it; a delete removes it. What a worker holds is the sum of its chunks plus what the
// leader's multis in flight give it, so it is never handed more than slots + prefetch.
//
// Threads: driven by its scheduler on the scheduler's executor (LeaderContext); not thread-safe.

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "scheduler/leader_context.h"
#include "scheduler/strategy.h"
#include "tasks/batch.h"
#include "tasks/records.h"

namespace drover::scheduler {

class WorkerTracker {
 public:
  struct ChunkState {
    int32_t version = -1;  // -1: not read yet
    tasks::Chunk chunk;
    bool watched = false;
  };
  struct Worker {
    tasks::WorkerInfo info;
    bool info_loaded = false;
    bool info_watched = false;
    bool listed = false;  // /assignments/{w} listed
    std::map<std::string, ChunkState> chunks;
    int reserved = 0;  // tasks in assign multis in flight
    // Whether everything it holds is known (its record, its folder and every chunk read).
    bool ready() const;
    int held() const;
  };
  // `gone(w)`: w left /workers, or its folder has no live worker: its chunks go back.
  WorkerTracker(const LeaderContext& ctx, std::function<void()> changed,
                std::function<void(const std::string&)> gone);

  // Lists /workers (and each worker's folder again: reconciliation).
  void follow();
  // True once the first /workers listing is in.
  bool loaded() const { return loaded_; }

  std::map<std::string, Worker>& workers() { return workers_; }
  Worker* find(const std::string& w);
  // The loads of the ready workers, sorted by id; `draining(w)` marks those taking nothing.
  std::vector<WorkerLoad> loads(const std::function<bool(const std::string&)>& draining) const;

  // Our multi created chunk `name` for w (version 0); our reclaim rewrote one.
  void created(const std::string& w, const std::string& name, tasks::Chunk chunk);
  void rewrote(const std::string& w, const std::string& name, int32_t version, tasks::Chunk chunk);
  // Reads a chunk again (a write on it failed on its version).
  void reread(const std::string& w, const std::string& name);
  // Lists /assignments and reports folders without a live worker through `gone`.
  void listFolders();

 private:
  void listWorkers();
  void loadInfo(const std::string& w);
  void listChunks(const std::string& w);
  void readChunk(const std::string& w, const std::string& name);
  coord::Watcher chunkWatcher(const std::string& w, const std::string& name);

  const LeaderContext& ctx_;
  const std::function<void()> changed_;
  const std::function<void(const std::string&)> gone_;
  std::map<std::string, Worker> workers_;
  bool watch_ = false;
  bool loaded_ = false;
};

}  // namespace drover::scheduler

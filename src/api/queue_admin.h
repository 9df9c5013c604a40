#pragma once

// The API's side of routing (docs/ROUTING.md): queue settings (/queues/{name}: pause, resume,
// concurrency limit), draining workers (/draining/{worker}), and why a pending task waits. The
// leader follows the same znodes (scheduler/queue_board.h); this only reads and writes them.
//
// Thread safety: stateless between calls; safe from the HTTP threads.

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "api/problem.h"
#include "api/store_options.h"
#include "coord/coordination.h"
#include "scheduler/routing.h"
#include "tasks/layout.h"

namespace drover::api {

struct QueueView {
  std::string name;
  scheduler::QueueSettings settings;
  std::vector<std::string> workers;  // live workers that serve it
};

class QueueAdmin {
 public:
  QueueAdmin(coord::Coordination& coord, const tasks::Layout& layout,
             std::chrono::milliseconds call_timeout);

  // Every queue that has settings or a live worker serving it, by name.
  StoreResult<std::vector<QueueView>> list(const std::vector<WorkerView>& workers);
  StoreResult<scheduler::QueueSettings> settings(const std::string& name);
  // Applies `patch` ({"paused"?, "max_running"?}) to the queue's settings; a bad patch is a 400
  // that changes nothing.
  StoreResult<scheduler::QueueSettings> update(const std::string& name, const tasks::Json& patch);

  // Asks worker `id` to drain (it must be live: 404 otherwise), or withdraws the request.
  StoreResult<bool> drain(const std::string& id, const std::vector<WorkerView>& workers);
  StoreResult<bool> undrain(const std::string& id);
  StoreResult<std::vector<std::string>> draining();

  // Why a pending task of `spec` waits. What it needs (the live workers, the draining set, the
  // queue settings) is read at most once per `kSnapshotTtl` and shared by every caller, so that
  // clients polling pending tasks do not cost a listing of the workers each.
  static constexpr std::chrono::milliseconds kSnapshotTtl{1000};
  StoreResult<std::string> waitingFor(const tasks::TaskSpec& spec,
                                      const std::function<StoreResult<WorkersView>()>& workers);

 private:
  template <class T>
  coord::Result<T> await(const coord::Future<T>& future) const {
    return awaitFor(future, call_timeout_);
  }

  coord::Coordination& coord_;
  const tasks::Layout& layout_;
  const std::chrono::milliseconds call_timeout_;

  struct Snapshot {
    std::chrono::steady_clock::time_point at;
    std::vector<scheduler::WorkerRouting> fleet;
    std::map<std::string, scheduler::QueueSettings> queues;  // read as asked for
  };
  std::mutex mu_;
  std::optional<Snapshot> snapshot_;  // under mu_
};

}  // namespace drover::api

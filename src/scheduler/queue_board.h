#pragma once

// The leader's view of the queues (docs/ROUTING.md): each queue's settings from /queues/{name}
// (paused, max_running) and the workers being drained (/draining/{worker}). It follows /queues
// and /draining with watches and calls `changed` when something that may unblock assignment
// moved. The tasks held per queue, which a limit is checked against, are counted from the chunks
// the leader tracks (chunk_queue_counts.h) and handed to open().
//
// Threads: driven by its scheduler on the scheduler's executor (LeaderContext); not thread-safe.

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "scheduler/leader_context.h"
#include "scheduler/routing.h"

namespace drover::scheduler {

// The held counts (chunk_queue_counts.h): tasks held per queue, and held tasks whose
// queue is not known (counted against every limited queue).
struct QueueHeld {
  std::map<std::string, int> counts;
  int unknown = 0;
};

class QueueBoard {
 public:
  QueueBoard(const LeaderContext& ctx, std::function<void()> changed);

  // Starts (or restarts, after a reconnect) following /queues and /draining.
  void follow();

  const QueueSettings& settings(const std::string& queue) const;
  bool draining(const std::string& worker) const { return draining_.count(worker) != 0; }
  // Whether a task of `queue` may be assigned now, given `extra` of its tasks already taken in
  // the round being built and the tasks workers hold per queue (chunk_queue_counts.h; nullopt:
  // not known yet, so a queue with a limit counts as full: never over).
  bool open(const std::string& queue, int extra, const std::optional<QueueHeld>& held) const;
  // Whether some queue has a limit: only then are held tasks counted per queue (the common case,
  // no limit anywhere, costs the assign path nothing).
  bool limited() const;

 private:
  // Lists `path`, keeping one child watch armed (`*armed`), and calls `apply` with the children.
  void followChildren(const std::string& path, bool* armed,
                      const std::function<void(const std::vector<std::string>&)>& apply);
  void listQueues();
  void loadQueue(const std::string& name);
  void listDraining();

  const LeaderContext& ctx_;
  const std::function<void()> changed_;
  std::map<std::string, QueueSettings> queues_;
  std::set<std::string> queue_watches_;  // names with a data watch outstanding
  bool queues_watch_ = false;
  bool draining_watch_ = false;
  std::set<std::string> draining_;
};

}  // namespace drover::scheduler

#pragma once

// The leader's view of the queues (docs/ROUTING.md): each queue's settings from /queues/{name}
// (paused, max_running), the workers being drained (/draining/{worker}), and how many tasks of
// each queue workers hold now, so that a queue's limit is never exceeded. It follows /queues and
// /draining with watches and calls `changed` when something that may unblock assignment moved.
//
// Counting (only while some queue has a limit): tasks this leader assigns are counted from the
// assign; tasks it finds held by a worker (assigned by an earlier leader, or while no queue had a
// limit) have their queue read once from their assignment. Until every such read is in, every
// queue with a limit counts as full: never over.
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

// Protocol v2's held counts (chunk_queue_counts.h): tasks held per queue, and held tasks whose
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
  // the round being built.
  bool open(const std::string& queue, int extra) const;
  int held(const std::string& queue) const;
  // Protocol v2: the same, with the held counts given by the caller (nullopt: not known yet, a
  // limited queue counts as full); the first protocol's counting below is not used.
  bool open(const std::string& queue, int extra, const std::optional<QueueHeld>& held) const;
  // Whether some queue has a limit: only then are held tasks counted per queue (the common case,
  // no limit anywhere, costs the assign path nothing).
  bool limited() const;

  // A task of `queue` is being given to a worker by this leader (its assign multi was sent).
  void assigned(const std::string& id, const std::string& queue);
  // Their assign multi came back (either way); the holders' held() say where they are now.
  void settled(const std::vector<std::string>& ids);
  // Worker w's assignments as the scheduler now counts them; the queue of an id not known here
  // is read from its assignment.
  void held(const std::string& w, const std::set<std::string>& ids);
  // Worker w is gone (its assignments go back through requeue).
  void forget(const std::string& w);

 private:
  // Lists `path`, keeping one child watch armed (`*armed`), and calls `apply` with the children.
  void followChildren(const std::string& path, bool* armed,
                      const std::function<void(const std::vector<std::string>&)>& apply);
  void listQueues();
  void loadQueue(const std::string& name);
  void listDraining();
  void learn(const std::string& w, const std::string& id);
  void recount();
  void limitsAppeared();

  const LeaderContext& ctx_;
  const std::function<void()> changed_;
  std::map<std::string, QueueSettings> queues_;
  std::set<std::string> queue_watches_;  // names with a data watch outstanding
  bool queues_watch_ = false;
  bool draining_watch_ = false;
  std::set<std::string> draining_;
  std::map<std::string, std::string> queue_of_;           // task id -> queue (known)
  std::map<std::string, std::set<std::string>> held_by_;  // worker -> ids it holds
  std::map<std::string, std::string> inflight_;           // ids being assigned -> queue
  std::set<std::string> lookups_;                         // ids whose queue is being read
  std::map<std::string, int> held_count_;                 // queue -> tasks held or in flight
  size_t unknown_ = 0;                                    // held tasks whose queue is not known yet
};

}  // namespace drover::scheduler

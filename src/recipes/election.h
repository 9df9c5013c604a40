#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/executor.h"
#include "coord/coordination.h"

namespace drover::recipes {

struct ElectionOptions {
  std::string election_dir;  // candidates' ephemeral-sequential nodes live here (must exist)
  std::string epoch_path;    // persistent; its data version is the fencing token
  std::string leader_path;   // ephemeral discovery record written by the leader
  std::string candidate_id;  // who we are (stored in the candidate node and /leader)
  // JSON for /leader; "{epoch}" in it is replaced by the epoch and "{id}" by the candidate id.
  std::string leader_data;
  // A leader disconnected for longer than this steps down even if its session may still live.
  base::Duration disconnect_bound = std::chrono::milliseconds(2000);
  // When set, the candidate id for a session of this generation, asked each time the candidate
  // stands; it replaces `candidate_id`. A node whose worker registers under a new id after a
  // session expiry must stand (and lead, in /leader) under that same id.
  std::function<std::string(uint64_t generation)> candidate_for = nullptr;
};

// Leader election with epoch fencing.
//
// Each candidate creates "c_{guid}_{seq}" (ephemeral sequential) and watches only the candidate
// just below it, so a leader's death wakes exactly one candidate. The lowest leads: it syncs,
// bumps the epoch node with a versioned set and keeps the new version E. Every write of the
// leader must go through fenced(), which puts check(epoch, E) first: once another candidate has
// won, such a multi fails with kBadVersion on op 0, and the owner calls stepDown().
//
// Callbacks run on the election's own executor thread, one at a time, in order: on_elected(E)
// then, eventually, on_lost(reason). They may block briefly but must not call stop().
class LeaderElection {
 public:
  struct Listener {
    std::function<void(int32_t epoch)> on_elected;
    std::function<void(const std::string& reason)> on_lost;
    // Called for each watch notification this candidate receives (for the no-herd check).
    std::function<void()> on_watch;
  };

  LeaderElection(coord::Coordination& coord, ElectionOptions options, Listener listener);
  ~LeaderElection();  // stop()s

  // Stands for election (asynchronously).
  void start();
  // Resigns: deletes the candidate node (and /leader if ours); on_lost("stopped") if leading.
  // Blocking; idempotent.
  void stop();
  // Steps down after the owner saw its fence fail; stands again with a new candidate node.
  // `epoch`: the leadership the owner's failure belongs to; a request about an earlier one (a
  // scheduler of a lost session whose fence report arrives after the next election was won) is
  // ignored. -1: whatever leadership is current.
  void stepDown(const std::string& reason, int32_t epoch = -1);

  bool isLeader() const { return leading_.load(); }
  int32_t epoch() const { return epoch_.load(); }
  std::string candidateNode() const;

 private:
  void stand();
  void check();
  void lead();
  void lose(const std::string& reason, bool restand);
  void onSession(const coord::SessionEvent& event);
  void verify();

  coord::Coordination& coord_;
  ElectionOptions options_;
  Listener listener_;
  std::string guid_;
  uint64_t session_listener_ = 0;
  // Executor-only state.
  std::string node_;         // our candidate node's name ("" when none)
  uint64_t generation_ = 0;  // the session our node belongs to
  bool stopped_ = false;
  base::TimerId disconnect_timer_ = 0;
  uint64_t check_round_ = 0;  // drops stale predecessor watches
  std::atomic<bool> leading_{false};
  std::atomic<int32_t> epoch_{-1};
  mutable std::mutex node_mu_;
  std::string node_copy_;
  // Shared so that watch callbacks, which can fire after this object is gone (a watch cannot be
  // taken back), hold it weakly: once the destructor has stopped it, their posts are dropped.
  std::shared_ptr<base::ThreadExecutor> executor_;
};

// Returns `ops` with check(epoch_path, epoch) in front: the fence for every leader write.
std::vector<coord::Op> fenced(const std::string& epoch_path, int32_t epoch,
                              std::vector<coord::Op> ops);

}  // namespace drover::recipes

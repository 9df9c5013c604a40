#pragma once

// The nemesis: a seeded schedule of faults against a Fleet. The same seed draws the same kinds
// (every kind once per round of nine, in a shuffled order), targets (as positions among the
// candidates of the moment) and durations, so a run is reproduced by its seed. Each fault is
// injected, held, then healed before the next one, with a quiet spell between faults; nodes that
// died on their own are restarted so the fleet keeps its workers. Every fault is appended to
// faults.jsonl with monotonic times (ms since the run started).
//
// Kinds: kill-worker, kill-leader (kill -9, restart later), zombie-worker, zombie-leader (SIGSTOP
// past the session timeout, SIGCONT), short-pause (SIGSTOP for a third of the timeout),
// zk-kill (kill -9 one ZooKeeper server, restart it), quorum-loss (kill two of three, restart),
// fleet-restart (kill -9 every node at once, restart), partition (drop the node's packets to
// the ZooKeeper ports with an iptables owner match on its uid; skipped where unavailable).
//
// Thread safety: run it on the thread that owns the Fleet.

#include <chrono>
#include <cstdint>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "jepsen/checker.h"
#include "jepsen/fleet.h"

namespace drover::jepsen {

// Whether the partition fault can run here: root, a working `iptables -L`, and a uid to run the
// partitioned node under. `reason` says why not.
struct PartitionSupport {
  bool available = false;
  int uid = -1;
  std::string reason;
};
PartitionSupport probePartition();

class Nemesis {
 public:
  using Clock = std::chrono::steady_clock;

  Nemesis(Fleet& fleet, uint64_t seed, Clock::time_point t0, const std::string& faults_path,
          PartitionSupport partition);
  // Removes a partition rule left in place (e.g. on an exception).
  ~Nemesis();

  // Injects faults until `duration` has passed, then heals everything (restarts every node that is
  // not running, resumes paused ones, restarts ZooKeeper servers, lifts the partition).
  void run(std::chrono::milliseconds duration);

  const std::vector<Fault>& faults() const { return faults_; }
  int64_t lastHealMs() const { return last_heal_ms_; }
  // Nodes that died on their own and were restarted (by node name and incarnation count).
  const std::vector<std::string>& crashes() const { return crashes_; }

 private:
  int64_t nowMs() const;
  // Waits `ms` while restarting crashed nodes.
  void hold(int64_t ms);
  void reapCrashed();
  void inject(const std::string& kind, uint64_t pick, int64_t hold_ms);
  void record(const Fault& f);
  bool partitionRule(bool add, int uid);

  Fleet& fleet_;
  std::mt19937_64 rng_;
  Clock::time_point t0_;
  std::ofstream log_;
  PartitionSupport partition_;
  bool partitioned_ = false;
  std::vector<std::string> bag_;  // kinds still to come in this round
  std::vector<Fault> faults_;
  std::vector<std::string> crashes_;
  int64_t last_heal_ms_ = 0;
};

}  // namespace drover::jepsen

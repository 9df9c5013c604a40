#pragma once

// The system under test for the fault suite: a 3-node ZooKeeper ensemble and N real `drover node`
// processes on loopback, each node keeping its API port across restarts so clients always know
// where to send. Every incarnation of a node logs to its own file in the output folder and is
// remembered (how it ended, whether the suite ended it) for the checker.
//
// Thread safety: use a Fleet from the one thread that created it (the child processes' death
// signal is tied to it; see local/process.h), except nodeUrls() and sessionTimeoutMs(), which are
// fixed at construction and may be read anywhere.

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "jepsen/checker.h"
#include "local/process.h"
#include "local/zk_cluster.h"

namespace drover::jepsen {

struct FleetOptions {
  std::string drover;  // the drover binary
  std::string out;     // output folder: node logs go to out/nodes/
  int nodes = 4;
  int slots = 4;
  int session_timeout_ms = 2000;
  std::string zk_root = "/jepsen";
  // Nodes whose index is listed run under this uid/gid (setpriv), for the partition fault; -1:
  // every node runs as the suite's user.
  int partition_uid = -1;
  int partition_node = -1;
};

class Fleet {
 public:
  // Starts the ensemble and every node, and waits until a leader is elected. Throws
  // std::runtime_error when the cluster cannot be brought up.
  explicit Fleet(FleetOptions options);
  ~Fleet();

  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  int size() const { return static_cast<int>(nodes_.size()); }
  const std::vector<std::string>& nodeUrls() const { return urls_; }
  std::string name(int i) const { return "n" + std::to_string(i + 1); }
  int sessionTimeoutMs() const { return options_.session_timeout_ms; }
  local::ZkCluster& zk() { return *zk_; }
  const FleetOptions& options() const { return options_; }

  // Node i's current incarnation: running (paused counts) or not.
  bool running(int i) const;
  pid_t pid(int i) const;
  // The node that leads according to GET /v1/cluster and /v1/workers on the live nodes; -1 when
  // none answers with a leader that maps to one of our nodes.
  int leaderIndex() const;
  // The highest epoch /v1/cluster has shown so far (leaderIndex() records it).
  int64_t maxEpochSeen() const { return max_epoch_seen_; }

  // Faults. kill9 marks the incarnation as ended by the suite.
  void kill9(int i);
  void pause(int i);
  void resume(int i);
  // Starts a new incarnation of node i (killing the old one first if it still runs) and waits up
  // to `timeout` for its worker to register. False when it did not register in time (it may
  // still be starting: the suite checks it later).
  bool restart(int i, std::chrono::milliseconds timeout = std::chrono::seconds(20));

  // Incarnations that exited without the suite ending them since the last call (a crash), by
  // node index. The suite restarts them so the fleet keeps its workers.
  std::vector<int> reapCrashed();

  // Ends every node (SIGTERM, then SIGKILL after `grace`), marking them ended by the suite.
  void stopAll(std::chrono::milliseconds grace = std::chrono::seconds(10));
  // Sends `sig` to node i's current incarnation without marking it (the crash plant).
  void signal(int i, int sig);

  // Every incarnation so far, with how it ended and what its log reports.
  std::vector<NodeRun> runs() const;

 private:
  struct Incarnation {
    int node = 0;
    int number = 0;
    std::string log_path;
    std::unique_ptr<local::Process> process;
    bool ended_by_suite = false;
    bool graceful_stop = false;  // stopAll sent SIGTERM: it must exit 0
    bool crash_reported = false;
  };

  void launch(int i);
  Incarnation& current(int i) { return *incarnations_[current_[i]]; }
  const Incarnation& current(int i) const { return *incarnations_[current_[i]]; }

  FleetOptions options_;
  std::unique_ptr<local::ZkCluster> zk_;
  std::vector<int> ports_;
  std::vector<std::string> urls_;
  std::vector<std::unique_ptr<Incarnation>> incarnations_;
  std::vector<size_t> current_;  // node index -> its current incarnation
  std::vector<int> nodes_;       // incarnation count per node
  mutable int64_t max_epoch_seen_ = -1;
};

// One HTTP request to a node; status 0 when no answer came.
struct HttpReply {
  int status = 0;
  std::string body;
};
HttpReply httpGet(const std::string& url, const std::string& path,
                  std::chrono::milliseconds timeout = std::chrono::seconds(2));
HttpReply httpPost(const std::string& url, const std::string& path, const std::string& body,
                   std::chrono::milliseconds timeout);

}  // namespace drover::jepsen

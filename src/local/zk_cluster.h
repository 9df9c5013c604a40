#pragma once

// Real ZooKeeper servers for integration tests: a standalone server or an ensemble on loopback,
// each server in its own temp dir with free ports, launched from Debian's zookeeper.jar as a child
// Process (so it can never outlive the test binary), with fault injection per server.
//
//   auto zk = ZkCluster::ensemble(3);            // started and serving, or it throws
//   MyClient client(zk->connectString());
//   zk->kill9(zk->leaderIndex());
//   ASSERT_TRUE(zk->waitUntilServing(30s));      // the other two elected a new leader
//
// Errors: the factories and restart() throw std::runtime_error (with the tail of the server's log)
// when a server cannot be brought to serve: they are a test's preconditions. Queries and waits
// return values (""/-1/false) so tests can assert on them.
//
// Thread safety: a ZkCluster is not synchronized. Use it from the thread that created it (the
// servers' PDEATHSIG is tied to that thread; see process.h). Only connectString, size, clientPort,
// srvr and mntr (which just talk to a port) may be called concurrently from other threads, e.g. by
// a client under test.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "local/process.h"

namespace drover::local {

struct ZkClusterOptions {
  // The server clamps session timeouts to [2, 20] x tickTime (unless min/max are set below), so
  // the default of 500 ms allows sessions of 1 to 10 s and fast failure detection.
  int tick_time_ms = 500;
  std::optional<int> min_session_timeout_ms = {};
  std::optional<int> max_session_timeout_ms = {};
  // JVM heap limit (-Xmx).
  std::string jvm_heap = "256m";
  // Extra JVM arguments, e.g. "-Dzookeeper.snapCount=1000".
  std::vector<std::string> jvm_args = {};
  // How long the factories and restart() wait for serving. Java on 2 busy cores is slow to start.
  std::chrono::milliseconds startup_timeout = std::chrono::seconds(60);
  // false writes forceSync=no: no fsync per transaction. Killing a server process keeps its
  // unsynced writes in the page cache, so tests of process faults lose nothing, and writes are
  // much faster on slow disks. Set true to measure realistic write latency.
  bool force_sync = false;
  // slf4j-simple level of the server log file (trace, debug, info, warn, error).
  std::string log_level = "info";
  // Lines appended verbatim to every server's zoo.cfg ("key=value"). A later key overrides.
  std::vector<std::string> extra_config = {};
  // Evidence of a run. Empty: each server's log, stdout and stderr stay in its temp dir, removed
  // with it. Set: they go to <keep_logs_dir>/server-<myid>/ instead, beside a copy of its zoo.cfg
  // and a JVM log of every GC and safepoint (gc.<run>.log, wall clock and uptime stamps), and
  // are never removed. The path must not contain ':' or ',' (the JVM's -Xlog syntax).
  std::string keep_logs_dir = {};
};

class ZkCluster {
 public:
  using Options = ZkClusterOptions;

  // One ZooKeeperServerMain. Returns once it answers `srvr` with "Mode: standalone".
  static std::unique_ptr<ZkCluster> standalone(Options options = {});
  // `n` QuorumPeerMain servers (myid 1..n). Returns once exactly one is leader and the others are
  // followers. n = 1 is a one-member quorum (standaloneEnabled=false): it reports "leader".
  static std::unique_ptr<ZkCluster> ensemble(int n = 3, Options options = {});

  // One cluster per test binary, started on first use with default options and torn down at exit.
  // Startup costs seconds, so suites that only need a working server should share it. Tests on a
  // shared cluster must work under their own uniqueRoot() and must not inject faults into it (use
  // a cluster of their own for that). Throws like the factories; a later call retries.
  // Note: ctest runs each gtest case in its own process, so sharing pays off within one process.
  static ZkCluster& sharedStandalone();
  static ZkCluster& sharedEnsemble();

  // SIGKILLs and reaps every server, then removes their dirs (kept, with their paths printed to
  // stderr, when DROVER_KEEP_TEST_DIRS=1).
  ~ZkCluster();

  ZkCluster(const ZkCluster&) = delete;
  ZkCluster& operator=(const ZkCluster&) = delete;

  // "127.0.0.1:p1,127.0.0.1:p2,...", all servers whether running or not.
  std::string connectString() const;
  int size() const { return static_cast<int>(servers_.size()); }
  bool isEnsemble() const { return ensemble_; }
  uint16_t clientPort(int i) const;

  // The server's `srvr` mode: "standalone", "leader", "follower" (or "observer"); "" when it is
  // not serving (not running, paused, electing, not answering within `timeout`).
  std::string mode(int i, std::chrono::milliseconds timeout = std::chrono::seconds(2)) const;
  // Index of the server whose mode is "leader" or "standalone" if there is exactly one, else -1.
  int leaderIndex() const;
  // Raw answers to the `mntr` and `srvr` four-letter words; "" if the server does not answer.
  std::string mntr(int i) const;
  std::string srvr(int i) const;

  // Waits until every running, unpaused server serves and, for an ensemble, exactly one of them is
  // leader and the others are followers. False at the deadline (e.g. no quorum is running).
  bool waitUntilServing(std::chrono::milliseconds timeout);
  // Waits until server i serves (any mode). False at the deadline or if it is not running.
  bool waitUntilServing(int i, std::chrono::milliseconds timeout);

  // Fault control of server i. Each is a no-op on a server that is not running (resume: not
  // paused).
  void kill9(int i);   // SIGKILL and reap.
  void stop(int i);    // SIGTERM (resuming it if paused); SIGKILL after 15 s; reap.
  void pause(int i);   // SIGSTOP: the process lives but answers nothing (a hung server).
  void resume(int i);  // SIGCONT.
  // Starts server i again with the same dataDir, config and ports (SIGKILLing it first if it is
  // still running) and waits up to startup_timeout until it serves; throws if it does not. Set
  // `wait` false to return at once, e.g. when too few servers run to form a quorum yet.
  void restart(int i, bool wait = true);
  // True while server i's process lives (a paused server is running).
  bool isRunning(int i) const;
  bool isPaused(int i) const;

  pid_t pid(int i) const;               // -1 when not running
  const std::string& dir(int i) const;  // the server's temp dir
  std::string configPath(int i) const;
  std::string dataDir(int i) const;
  std::string logPath(int i) const;  // the current run's log file
  // Where server i's log files go: options().keep_logs_dir + "/server-<myid>", else dir(i).
  std::string logDir(int i) const;
  const Options& options() const { return options_; }

 private:
  struct Server {
    int id = 0;  // myid
    std::string dir;
    uint16_t client_port = 0;
    uint16_t quorum_port = 0;
    uint16_t election_port = 0;
    int runs = 0;  // how many times it was started; names the log files
    std::unique_ptr<Process> process;
    bool paused = false;
  };

  ZkCluster(int n, bool ensemble, Options options);
  static std::unique_ptr<ZkCluster> create(int n, bool ensemble, const Options& options);
  void writeConfig(const Server& server) const;
  void launch(int i);
  // Waits up to startup_timeout for `ready`; throws, with log tails, at the deadline or as soon as
  // a watched server's process exits (server `only`, or all when -1).
  template <class Ready>
  void awaitOrThrow(Ready ready, std::string_view what, int only);
  bool servingNow() const;
  std::string logTail(int i, int lines = 40) const;
  const Server& server(int i) const;
  Server& server(int i);

  bool ensemble_;
  Options options_;
  std::vector<Server> servers_;
};

// Sends a ZooKeeper four-letter word ("srvr", "mntr", "ruok", "stat") to 127.0.0.1:port and returns
// the whole answer, or "" if the server does not answer within `timeout`. Thread-safe.
std::string fourLetterWord(uint16_t port, std::string_view command,
                           std::chrono::milliseconds timeout = std::chrono::seconds(2));

// "/t-<16 random hex digits>": a fresh root path for a test on a shared cluster. Thread-safe.
std::string uniqueRoot();

}  // namespace drover::local

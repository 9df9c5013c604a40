// drover_bench: Drover's benchmark driver. It starts what it measures (a 3-node ZooKeeper
// ensemble with forceSync, optionally a standalone server, and real `drover node` processes on
// free loopback ports), runs the scenarios of docs/PERFORMANCE.md, measures ZooKeeper's raw
// limits on the same ensemble in the same run, and writes one JSON document with every figure
// (bench/report.py turns it into a markdown table and plots).
//
// Every wait has a deadline; a scenario whose tasks do not finish is recorded as a failure with
// its detail and the run goes on. The exit code is 1 when any scenario failed (lost tasks,
// submit errors, a deadline passed), so `--smoke` can serve as a CI test. No speed target is
// asserted anywhere: figures only.
#include <httplib.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/ids.h"
#include "coord/zk/zk_coordination.h"
#include "local/ports.h"
#include "local/process.h"
#include "local/zk_cluster.h"
#include "peer.h"
#include "tasks/inspect.h"
#include "tasks/layout.h"
#include "tasks/task.h"

namespace drover::bench {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using local::Process;
using local::ZkCluster;

double secondsSince(SteadyClock::time_point t0) {
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}
int64_t msSince(SteadyClock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - t0).count();
}

// Waits on a condition with a deadline (polls every `poll`).
template <class Pred>
bool waitFor(Pred&& pred, std::chrono::milliseconds timeout, std::chrono::milliseconds poll = 5ms) {
  auto deadline = SteadyClock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (SteadyClock::now() >= deadline) return pred();
    std::this_thread::sleep_for(poll);
  }
}

// Scenario sizes. The throughput scenarios default to 100,000 tasks (issue 9's floor for `make
// bench`); --smoke shrinks everything to seconds.
struct Config {
  std::string drover;
  std::string out;
  int nodes = 3;
  int slots = 8;
  // The nodes' --prefetch (-1: the node's default, 16). 128 by default here: no-op tasks are what
  // prefetch is for, and the tasks one assign and one commit write carry set the rate
  // (docs/PERFORMANCE.md: 780 vs 3,071 tasks/s end to end at 16 and 128, same session).
  int prefetch = 128;
  int session_ms = 2000;
  int batch_tasks = 100000;
  int batch_size = 500;
  int batch_clients = 2;
  int single_tasks = 100000;
  int single_clients = 64;
  double light_rate = 20;
  double latency_seconds = 15;
  std::vector<int> failover_sessions = {2000, 4000};
  bool failover_leader = true;
  bool failover_graceful = true;
  int backlog_tasks = 200000;  // past the default retention count (100,000): retention runs too
  int backlog_workers = 3;
  // failover-leader-backlog: pending tasks a new leader finds when the old one is killed.
  int leader_backlog_tasks = 50000;
  // The backlog's nodes use the product default session timeout: a server pausing for a full GC
  // of a million-znode heap must not expire them.
  int backlog_session_ms = 4000;
  std::vector<int> scaling_workers = {1, 2, 4, 8, 16};
  int scaling_tasks = 1500;
  double idle_seconds = 10;
  int raw_creates = 20000;
  int raw_multis = 300;
  bool standalone = true;
  int stall_seconds = 30;  // a drain with no progress for this long is a failure
  // No-op tasks run through the fresh ensemble before anything is measured: a new ZooKeeper JVM
  // spends most of its first minute of load compiling (C2 JIT threads took ~40% of a core per
  // server), which would be charged to whichever scenario runs first. Recorded as "warmup".
  int warmup_tasks = 20000;
  // Each ZooKeeper server's heap: the whole tree lives in it (a 1M-task backlog needs ~3g).
  std::string zk_heap = "1g";
  // Extra JVM arguments for every ZooKeeper server (e.g. a GC choice), recorded in the results.
  std::vector<std::string> zk_jvm_args;
  // The servers' tickTime. ZooKeeper expires sessions on tick boundaries, so a dead worker's
  // session ends between session_timeout and session_timeout + tickTime after it went silent:
  // the tick is the slack of every kill -9 failover figure.
  int zk_tick_ms = 250;
  // Empty: no evidence kept. Set: the servers' logs, zoo.cfg and JVM GC logs go to
  // <dir>/ensemble/server-<n>/ (and <dir>/standalone/), every drover node's output to
  // <dir>/nodes/<root>/<id>.log, all kept after the run.
  std::string keep_zk_logs;
  bool smoke = false;
  // The Celery peer (bench/celery_peer.py; empty: none), run after Drover's scenarios with the
  // same sizes, and the Redis persistence of each of its runs ("everysec", "none").
  std::string celery_peer;
  std::vector<std::string> celery_persistence = {"everysec"};
  // Scenario name prefixes to run (empty: all), e.g. {"throughput-batch", "latency"}.
  std::vector<std::string> only;
  bool wants(const std::string& name) const {
    if (only.empty()) return true;
    for (const auto& p : only) {
      if (name.rfind(p, 0) == 0) return true;
    }
    return false;
  }
};

void applySmoke(Config& c) {
  c.smoke = true;
  c.batch_tasks = 200;
  c.batch_size = 100;
  c.single_tasks = 100;
  c.single_clients = 16;
  c.latency_seconds = 2;
  c.failover_sessions = {2000};
  c.failover_leader = false;
  c.failover_graceful = false;
  c.backlog_tasks = 2000;
  c.backlog_workers = 2;
  c.leader_backlog_tasks = 0;
  c.scaling_workers = {1, 2};
  c.scaling_tasks = 200;
  c.idle_seconds = 2;
  c.raw_creates = 2000;
  c.raw_multis = 20;
  c.standalone = false;
  c.stall_seconds = 20;
  c.warmup_tasks = 0;
}

// --- small helpers ---------------------------------------------------------------------------

std::string shell(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[256];
    while (fgets(buf, sizeof buf, p) != nullptr) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// utime + stime of a process in seconds, from /proc/PID/stat; -1 if unreadable.
double cpuSeconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  if (!std::getline(f, s)) return -1;  // exited meanwhile (an iterator would throw ESRCH)
  auto close = s.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream in(s.substr(close + 2));
  std::string field;
  // After "pid (comm) ": state is field 3; utime and stime are fields 14 and 15.
  std::vector<std::string> fields;
  while (in >> field && fields.size() < 13) fields.push_back(field);
  if (fields.size() < 13) return -1;
  double ticks = std::stod(fields[11]) + std::stod(fields[12]);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// VmRSS of a process in MiB; -1 if unreadable.
double rssMiB(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

std::map<std::string, double> parseMntr(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto sep = line.find_first_of(" \t");
    if (sep == std::string::npos) continue;
    try {
      out[line.substr(0, sep)] = std::stod(line.substr(sep + 1));
    } catch (...) {  // a text value (zk_version, zk_server_state): not a figure
    }
  }
  return out;
}

Json mntrSummary(const ZkCluster& zk) {
  static const std::vector<std::string> kKeys = {
      "zk_znode_count",          "zk_approximate_data_size",
      "zk_avg_latency",          "zk_max_latency",
      "zk_outstanding_requests", "zk_packets_received",
      "zk_packets_sent",         "zk_num_alive_connections",
      "zk_watch_count",          "zk_fsync_threshold_exceed_count"};
  Json out = Json::object();
  for (int i = 0; i < zk.size(); ++i) {
    auto m = parseMntr(zk.mntr(i));
    Json s = Json::object();
    for (const auto& k : kKeys) {
      if (m.count(k)) s[k] = m[k];
    }
    s["mode"] = zk.mode(i);
    out["server" + std::to_string(i + 1)] = s;
  }
  return out;
}

double packetsReceived(const ZkCluster& zk) {
  double sum = 0;
  for (int i = 0; i < zk.size(); ++i) sum += parseMntr(zk.mntr(i))["zk_packets_received"];
  return sum;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(rank));
  size_t hi = std::min(v.size() - 1, lo + 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

Json latencyFigures(const std::vector<double>& v) {
  return {{"count", v.size()},
          {"p50_ms", percentile(v, 50)},
          {"p99_ms", percentile(v, 99)},
          {"p999_ms", percentile(v, 99.9)},
          {"max_ms", v.empty() ? NAN : *std::max_element(v.begin(), v.end())}};
}

Json noopTask(const std::string& id) { return {{"id", id}, {"type", "noop"}}; }

std::unique_ptr<httplib::Client> client(int port) {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
  c->set_keep_alive(true);
  c->set_tcp_nodelay(true);
  c->set_connection_timeout(5);
  c->set_read_timeout(30);
  c->set_write_timeout(30);
  return c;
}

// The counters of the nodes' /metrics that break a run's requests down (docs/METRICS.md):
// ZooKeeper requests per op, the leader's assign multis and tasks, the workers' commit multis.
// Summed over `ports`; a node that does not answer adds nothing.
std::map<std::string, double> scrapeCounters(const std::vector<int>& ports) {
  static const std::string kOps = "drover_zookeeper_request_duration_seconds_count{op=\"";
  std::map<std::string, double> out;
  for (int port : ports) {
    auto c = client(port);
    auto r = c->Get("/metrics");
    if (!r || r->status != 200) continue;
    std::istringstream in(r->body);
    std::string line;
    while (std::getline(in, line)) {
      auto space = line.rfind(' ');
      if (space == std::string::npos) continue;
      std::string key;
      static const std::string kReads = "drover_zookeeper_reads_total{";
      if (line.rfind(kReads, 0) == 0) {
        // drover_zookeeper_reads_total{op="get",tree="pending"} 12 -> reads_get_pending
        auto label = [&](const std::string& k) {
          auto at = line.find(k + "=\"");
          if (at == std::string::npos || at > space) return std::string();
          at += k.size() + 2;
          return line.substr(at, line.find('"', at) - at);
        };
        key = "reads_" + label("op") + "_" + label("tree");
      } else if (line.rfind(kOps, 0) == 0) {
        auto end = line.find('"', kOps.size());
        if (end == std::string::npos) continue;
        key = "zk_" + line.substr(kOps.size(), end - kOps.size());
      } else {
        for (const char* name :
             {"drover_scheduler_assign_multis_total", "drover_scheduler_assigned_total",
              "drover_worker_commit_multis_total", "drover_zookeeper_write_bytes_total"}) {
          if (line.rfind(std::string(name) + " ", 0) == 0) key = name;
        }
      }
      if (key.empty()) continue;
      out[key] += std::strtod(line.c_str() + space + 1, nullptr);
    }
  }
  return out;
}

// Per task, what the nodes' counters grew by between two scrapes: requests by op, and the tasks
// each assign and commit multi carried.
Json requestBreakdown(const std::map<std::string, double>& before,
                      const std::map<std::string, double>& after, int64_t tasks) {
  auto grew = [&](const std::string& k) {
    auto a = after.find(k);
    auto b = before.find(k);
    return (a == after.end() ? 0.0 : a->second) - (b == before.end() ? 0.0 : b->second);
  };
  Json per_op = Json::object();
  for (const auto& [k, v] : after) {
    if (k.rfind("zk_", 0) == 0 && grew(k) > 0) per_op[k.substr(3)] = grew(k) / tasks;
  }
  Json reads = Json::object();  // reads per task by op and by the part of the tree read
  for (const auto& [k, v] : after) {
    if (k.rfind("reads_", 0) == 0 && grew(k) / tasks >= 0.001) reads[k.substr(6)] = grew(k) / tasks;
  }
  double assigns = grew("drover_scheduler_assign_multis_total");
  double commits = grew("drover_worker_commit_multis_total");
  return {{"node_requests_per_task_by_op", per_op},
          {"node_reads_per_task_by_tree", reads},
          {"assign_multis", assigns},
          {"tasks_per_assign_multi",
           assigns > 0 ? grew("drover_scheduler_assigned_total") / assigns : 0.0},
          {"commit_multis", commits},
          {"tasks_per_commit_multi", commits > 0 ? tasks / commits : 0.0},
          // Data bytes the nodes wrote to ZooKeeper per task (creates and sets), against the
          // bytes of the spec each client sent: the "payload bytes written" figure.
          {"written_bytes_per_task", grew("drover_zookeeper_write_bytes_total") / tasks}};
}

// --- a Drover cluster under a fresh root -------------------------------------------------------

struct Node {
  std::string id;
  int port = 0;
  std::unique_ptr<Process> process;
};

class Cluster {
 public:
  Cluster(const Config& config, const ZkCluster& zk, int session_ms)
      : config_(config), zk_(zk), session_ms_(session_ms), layout_(local::uniqueRoot()) {
    auto c = coord::ZkCoordination::connect({zk.connectString(), 10000ms});
    if (!c) throw std::runtime_error("connect: " + c.error().toString());
    zkc_ = std::move(*c);
    if (!zkc_->waitConnected(30s)) throw std::runtime_error("bench client: no ZooKeeper session");
  }

  // Starts one node and waits until it serves (and, with a worker, until it is registered).
  Node& start(const std::string& id, bool worker = true, bool leader = true) {
    auto n = std::make_unique<Node>();
    n->id = id;
    n->port = local::freePort();
    std::vector<std::string> argv = {config_.drover,
                                     "node",
                                     "--zk",
                                     zk_.connectString(),
                                     "--zk-root",
                                     layout_.root(),
                                     "--http",
                                     "127.0.0.1:" + std::to_string(n->port),
                                     "--id",
                                     id,
                                     "--slots",
                                     std::to_string(config_.slots),
                                     "--session-timeout-ms",
                                     std::to_string(session_ms_)};
    if (config_.prefetch >= 0) {
      argv.push_back("--prefetch");
      argv.push_back(std::to_string(config_.prefetch));
    }
    if (!worker) argv.push_back("--no-worker");
    if (!leader) argv.push_back("--no-leader");
    std::string log;
    if (!config_.keep_zk_logs.empty()) {
      std::string dir = config_.keep_zk_logs + "/nodes" + layout_.root();
      std::filesystem::create_directories(dir);
      log = dir + "/" + id + ".log";
    }
    n->process = std::make_unique<Process>(
        local::ProcessOptions{.argv = argv, .stdout_path = log, .stderr_path = log});
    std::string needle = worker ? "worker " + id + " registered" : "serving the API on";
    if (!waitFor([&] { return n->process->readStderr().find(needle) != std::string::npos; }, 30s,
                 10ms)) {
      throw std::runtime_error("node " + id + " did not start: " + n->process->readStderr());
    }
    nodes_.push_back(std::move(n));
    return *nodes_.back();
  }

  void startNodes(int n, const std::string& prefix = "n") {
    for (int i = 0; i < n; ++i) start(prefix + std::to_string(i + 1));
    if (!waitFor([&] { return !leaderId().empty(); }, 30s, 10ms)) {
      throw std::runtime_error("no leader within 30 s");
    }
  }

  std::vector<std::unique_ptr<Node>>& nodes() { return nodes_; }
  Node* byId(const std::string& id) {
    for (auto& n : nodes_) {
      if (n->id == id) return n.get();
    }
    return nullptr;
  }
  // Ports of live nodes that serve the API, for spreading clients.
  std::vector<int> ports(const std::string& except = "") {
    std::vector<int> out;
    for (auto& n : nodes_) {
      if (n->id != except && n->process->alive()) out.push_back(n->port);
    }
    return out;
  }

  Json leader() {
    auto node = zkc_->get(layout_.leader(), nullptr).waitFor(5s);
    if (!node || !*node) return nullptr;
    Json j = Json::parse((*node)->data, nullptr, false);
    return j.is_object() ? j : Json(nullptr);
  }
  std::string leaderId() {
    Json j = leader();
    return j.is_object() ? j.value("id", "") : "";
  }
  int leaderEpoch() {
    Json j = leader();
    return j.is_object() ? j.value("epoch", -1) : -1;
  }
  bool workerRegistered(const std::string& id) {
    auto r = zkc_->exists(layout_.worker(id), nullptr).waitFor(5s);
    return r && *r && (*r)->has_value();
  }

  // Task attempts the nodes' workers finished for good (succeeded or failed), from their
  // /metrics (drover_tasks_completed_total): no ZooKeeper request, so watching a drain does not
  // load the servers it measures. -1 when a node does not answer. Valid while no node died.
  int64_t completed() {
    int64_t sum = 0;
    for (auto& n : nodes_) {
      if (!n->process->alive()) continue;
      auto cli = client(n->port);
      auto r = cli->Get("/metrics");
      if (!r || r->status != 200) return -1;
      std::istringstream in(r->body);
      std::string line;
      while (std::getline(in, line)) {
        if (line.rfind("drover_tasks_completed_total{outcome=\"succeeded\"}", 0) != 0 &&
            line.rfind("drover_tasks_completed_total{outcome=\"failed\"}", 0) != 0) {
          continue;
        }
        auto sp = line.rfind(' ');
        if (sp != std::string::npos) sum += static_cast<int64_t>(std::stod(line.substr(sp + 1)));
      }
    }
    return sum;
  }

  // The tasks not terminal: those waiting in pending states plus those in chunks (read whole,
  // only at the end of a drain). The requests are counted approximately: listings and reads.
  // -1 on a read error.
  int64_t remaining() {
    auto left = tasks::inspect::unfinished(*zkc_, layout_);
    if (!left) return -1;
    poll_requests_ += 4 + static_cast<int64_t>(left->size());
    return static_cast<int64_t>(left->size());
  }

  // The outcomes of `ids` from their batches' result records (a task not finished is absent).
  std::map<std::string, tasks::TaskStatus> statuses(const std::vector<std::string>& ids) {
    auto found = tasks::inspect::outcomes(*zkc_, layout_, ids);
    return found ? std::move(*found) : std::map<std::string, tasks::TaskStatus>{};
  }

  // The failover scenarios' view: statuses() (the records hold outcomes only) plus what a live
  // node's API says of each task not finished yet (assigned or running, and where). One GET per
  // unfinished id: for a handful of ids.
  std::map<std::string, tasks::TaskStatus> liveStatuses(const std::vector<std::string>& ids) {
    auto out = statuses(ids);
    auto live = ports();
    if (live.empty()) return out;
    auto cli = client(live.front());
    for (const auto& id : ids) {
      if (out.count(id)) continue;
      auto r = cli->Get("/v1/tasks/" + id);
      if (!r || r->status != 200) continue;
      auto j = tasks::parseJson(r->body);
      if (auto st = j ? tasks::statusFromJson(*j) : std::nullopt) out.emplace(id, *st);
    }
    return out;
  }

  const tasks::Layout& layout() const { return layout_; }
  // ZooKeeper requests made by remaining(): the measurement's own load, subtracted from figures.
  int64_t pollRequests() const { return poll_requests_; }

 private:
  const Config& config_;
  const ZkCluster& zk_;
  int session_ms_;
  tasks::Layout layout_;
  std::unique_ptr<coord::ZkCoordination> zkc_;
  std::vector<std::unique_ptr<Node>> nodes_;
  int64_t poll_requests_ = 0;
};

// A scenario's record; `ok` false with `detail` on a failure.
struct Outcome {
  bool ok = true;
  std::string detail;
  void fail(const std::string& why) {
    ok = false;
    detail += (detail.empty() ? "" : "; ") + why;
  }
};

// Checks that every id ended `succeeded`; fills figures["states"] and fails `out` otherwise.
// Every task must have succeeded. `retained`: the leader's status retention count; past it the
// oldest statuses are deleted (as designed), so up to ids.size() - retained may be missing, and
// the workers' completion counters must then account for every task.
void verifySucceeded(Cluster& cluster, const std::vector<std::string>& ids, Json& figures,
                     Outcome& out, size_t retained = SIZE_MAX) {
  auto all = cluster.statuses(ids);
  std::map<std::string, int> states;
  int missing = 0;
  for (const auto& id : ids) {
    auto it = all.find(id);
    if (it == all.end()) {
      ++missing;
      continue;
    }
    states[std::string(tasks::stateName(it->second.state))]++;
  }
  figures["states"] = states;
  figures["missing_statuses"] = missing;
  int ok = states["succeeded"];
  size_t may_miss = ids.size() > retained ? ids.size() - retained : 0;
  if (may_miss > 0) {
    int64_t completed = cluster.completed();
    figures["completions"] = completed;
    figures["deleted_by_retention_allowed"] = may_miss;
    if (static_cast<size_t>(missing) <= may_miss && ok + missing == static_cast<int>(ids.size()) &&
        completed == static_cast<int64_t>(ids.size())) {
      return;
    }
    out.fail(std::to_string(ok) + " succeeded, " + std::to_string(missing) +
             " statuses missing (at most " + std::to_string(may_miss) + " may be), " +
             std::to_string(completed) + " completions for " + std::to_string(ids.size()) +
             " tasks");
    return;
  }
  if (missing > 0 || ok != static_cast<int>(ids.size())) {
    out.fail(std::to_string(ids.size() - ok) + " of " + std::to_string(ids.size()) +
             " tasks did not succeed (" + std::to_string(missing) + " statuses missing)");
  }
}

// Samples the done count (submitted - remaining tokens) until every submitted task is terminal,
// no progress was seen for `stall`, or `deadline` passed. `submitted` is updated by submitters;
// `submitting` is true while they run.
struct Drain {
  bool finished = false;
  double seconds = 0;                              // from t0 to the last task terminal
  std::vector<std::pair<double, int64_t>> series;  // (s since t0, tasks done)
  std::string detail;
};
Drain drain(Cluster& cluster, SteadyClock::time_point t0, const std::atomic<int64_t>& submitted,
            const std::atomic<bool>& submitting, std::chrono::seconds stall,
            std::chrono::milliseconds deadline, std::chrono::milliseconds interval = 100ms) {
  // Progress comes from the nodes' completion counters (no ZooKeeper load); the end is confirmed
  // by counting the tokens left in ZooKeeper (one pipelined wave of `exists`).
  Drain d;
  auto last_progress = SteadyClock::now();
  int64_t last_done = -1;
  int64_t rem = -1;
  while (true) {
    bool still = submitting.load();
    int64_t sub = submitted.load();
    int64_t done = cluster.completed();
    if (done >= 0) {
      d.series.emplace_back(secondsSince(t0), std::min(done, sub));
      if (done != last_done) {
        last_done = done;
        last_progress = SteadyClock::now();
      }
      if (!still && done >= sub) {
        rem = cluster.remaining();
        if (rem == 0) {
          d.finished = true;
          d.seconds = secondsSince(t0);
          return d;
        }
      }
    }
    if (!still && SteadyClock::now() - last_progress > stall) {
      rem = cluster.remaining();
      d.detail = "no progress for " + std::to_string(stall.count()) + " s with " +
                 std::to_string(rem) + " tasks left";
      return d;
    }
    if (SteadyClock::now() - t0 > deadline) {
      rem = cluster.remaining();
      d.detail = "deadline passed with " + std::to_string(rem) + " tasks left";
      return d;
    }
    std::this_thread::sleep_for(interval);
  }
}

Json seriesJson(const std::vector<std::pair<double, int64_t>>& s) {
  Json a = Json::array();
  for (const auto& [t, n] : s) a.push_back({std::round(t * 1000) / 1000, n});
  return a;
}

// Submits `n` no-op tasks (ids prefix-i) through the cluster's nodes, `per_batch` per POST of
// /v1/tasks/batch with `clients` threads, or one per POST /v1/tasks when per_batch is 0. A failed
// request is retried (same ids, so a repeat is harmless) up to 7 times, after the Retry-After the
// server sent (else 1 s), as a client would: each retry is counted in `retries`; a request that
// failed every attempt counts in `errors` (its tasks were not accepted).
struct Submit {
  std::vector<std::string> ids;
  std::atomic<int64_t> accepted{0};
  std::atomic<int64_t> errors{0};
  std::atomic<int64_t> retries{0};
  std::atomic<bool> running{true};
  double seconds = 0;
  std::string first_error;
  std::mutex mu;
};
void submitTasks(Submit& s, const std::vector<int>& ports, const std::string& prefix, int n,
                 int per_batch, int clients, bool generated_ids = false) {
  s.ids.clear();
  for (int i = 0; i < n; ++i) s.ids.push_back(prefix + std::to_string(i));
  // Generated ids: the tasks go without an id and s.ids[i] becomes the one the server returned
  // (each thread writes only the slots of its own requests).
  auto task = [&](int i) { return generated_ids ? Json{{"type", "noop"}} : noopTask(s.ids[i]); };
  int units = per_batch > 0 ? (n + per_batch - 1) / per_batch : n;
  std::atomic<int> next{0};
  auto t0 = SteadyClock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto cli = client(ports[c % ports.size()]);
      for (int u = next++; u < units; u = next++) {
        std::string path, body;
        int count = 1;
        if (per_batch > 0) {
          Json tasks = Json::array();
          for (int i = u * per_batch; i < std::min(n, (u + 1) * per_batch); ++i) {
            tasks.push_back(task(i));
          }
          count = static_cast<int>(tasks.size());
          path = "/v1/tasks/batch";
          body = Json{{"tasks", tasks}}.dump();
        } else {
          path = "/v1/tasks";
          body = task(u).dump();
        }
        constexpr int kAttempts = 8;
        for (int attempt = 1; attempt <= kAttempts; ++attempt) {
          auto r = cli->Post(path, body, "application/json");
          if (r && (r->status == 202 || r->status == 200)) {
            if (generated_ids) {
              Json reply = Json::parse(r->body, nullptr, false);
              int first = per_batch > 0 ? u * per_batch : u;
              if (per_batch > 0 && reply.is_object() && reply["ids"].is_array()) {
                for (size_t k = 0; k < reply["ids"].size() && first + k < s.ids.size(); ++k) {
                  s.ids[first + k] = reply["ids"][k].get<std::string>();
                }
              } else if (per_batch == 0 && reply.is_object() && reply["id"].is_string()) {
                s.ids[first] = reply["id"].get<std::string>();
              }
            }
            s.accepted += count;
            break;
          }
          {
            std::lock_guard lock(s.mu);
            if (s.first_error.empty()) {
              s.first_error = r ? std::to_string(r->status) + " " + r->body.substr(0, 200)
                                : "transport: " + httplib::to_string(r.error());
            }
          }
          if (attempt == kAttempts || (r && r->status >= 400 && r->status < 500)) {
            s.errors++;  // given up (a 4xx will not change on a retry)
            break;
          }
          s.retries++;
          int wait_s = 1;
          if (r && r->has_header("Retry-After")) {
            try {
              wait_s = std::clamp(std::stoi(r->get_header_value("Retry-After")), 1, 10);
            } catch (...) {
            }
          }
          std::this_thread::sleep_for(std::chrono::seconds(wait_s));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  s.seconds = secondsSince(t0);
  s.running = false;
}

// --- scenarios ---------------------------------------------------------------------------------

struct Bench {
  Config config;
  std::unique_ptr<ZkCluster> ensemble;
  std::unique_ptr<ZkCluster> standalone;
  Json scenarios = Json::array();
  bool any_failed = false;
  double peak_rate = 0;  // best end-to-end tasks/s, sets the "half peak" latency load

  void record(const std::string& name, const Json& params, Json figures, const Outcome& out,
              Json series = nullptr) {
    Json s = {{"scenario", name},
              {"parameters", params},
              {"figures", std::move(figures)},
              {"ok", out.ok}};
    if (!out.ok) s["failure"] = out.detail;
    if (!series.is_null()) s["series"] = std::move(series);
    if (!out.ok) any_failed = true;
    std::cout << (out.ok ? "[ ok ] " : "[ FAILED ] ") << name << " " << s["figures"].dump()
              << (out.ok ? "" : " -- " + out.detail) << std::endl;
    scenarios.push_back(std::move(s));
  }

  // Runs `body`; an exception is recorded as the scenario's failure.
  void guarded(const std::string& name, const Json& params,
               const std::function<void(Json&, Outcome&, Json&)>& body) {
    Json figures = Json::object(), series = nullptr;
    Outcome out;
    std::cout << "[ run ] " << name << " " << params.dump() << std::endl;
    try {
      body(figures, out, series);
    } catch (const std::exception& e) {
      out.fail(std::string("exception: ") + e.what());
    }
    record(name, params, std::move(figures), out, std::move(series));
  }

  // End-to-end no-op throughput: first submit to the last task terminal.
  void throughput(const std::string& name, ZkCluster& zk, int workers, int n, int per_batch,
                  int clients) {
    Json params = {{"workers", workers},
                   {"tasks", n},
                   {"per_request", per_batch > 0 ? per_batch : 1},
                   {"clients", clients},
                   {"slots", config.slots},
                   {"prefetch", config.prefetch},
                   {"zookeeper", zk.isEnsemble() ? "ensemble-3" : "standalone"},
                   {"force_sync", zk.options().force_sync}};
    guarded(name, params, [&](Json& figures, Outcome& out, Json& series) {
      Cluster cluster(config, zk, config.session_ms);
      cluster.startNodes(workers);
      std::vector<pid_t> pids;
      for (auto& node : cluster.nodes()) pids.push_back(node->process->pid());
      std::vector<double> cpu0;
      for (pid_t p : pids) cpu0.push_back(cpuSeconds(p));
      std::vector<double> zcpu0;
      for (int i = 0; i < zk.size(); ++i) zcpu0.push_back(cpuSeconds(zk.pid(i)));
      double packets0 = packetsReceived(zk);
      auto counters0 = scrapeCounters(cluster.ports());

      Submit s;
      auto t0 = SteadyClock::now();
      std::thread submitter(
          [&] { submitTasks(s, cluster.ports(), name + "-", n, per_batch, clients, true); });
      // submitTasks fills s.ids before any request: the drain only reads counters.
      auto stall = std::chrono::seconds(config.stall_seconds);
      Drain d = drain(cluster, t0, s.accepted, s.running, stall,
                      std::chrono::milliseconds(static_cast<int64_t>(n) * 200 + 120000));
      submitter.join();
      double wall = secondsSince(t0);

      figures["submit_seconds"] = s.seconds;
      figures["submit_rate"] = s.accepted / std::max(1e-9, s.seconds);
      figures["submit_errors"] = s.errors.load();
      figures["submit_retries"] = s.retries.load();
      if (d.finished) {
        figures["e2e_seconds"] = d.seconds;
        figures["e2e_rate"] = n / d.seconds;
        peak_rate = std::max(peak_rate, n / d.seconds);
      }
      double node_cpu = 0;
      for (size_t i = 0; i < pids.size(); ++i) node_cpu += cpuSeconds(pids[i]) - cpu0[i];
      double zk_cpu = 0;
      for (int i = 0; i < zk.size(); ++i) zk_cpu += cpuSeconds(zk.pid(i)) - zcpu0[i];
      // CPU used over the run as a share of the machine's cores: low means the pipeline waits
      // (round trips, timers), not that it computes.
      unsigned cores = std::max(1u, std::thread::hardware_concurrency());
      figures["drover_cpu_share"] = node_cpu / wall / cores;
      figures["zookeeper_cpu_share"] = zk_cpu / wall / cores;
      // Requests received by all servers, less the drain poller's own, per task.
      double requests =
          packetsReceived(zk) - packets0 - static_cast<double>(cluster.pollRequests());
      figures["zk_requests_per_task"] = requests / n;
      // Per task, all nodes together and all servers together (issue 9's budget: <= 100 and
      // <= 60 core-µs).
      figures["drover_core_us_per_task"] = node_cpu * 1e6 / n;
      figures["zookeeper_core_us_per_task"] = zk_cpu * 1e6 / n;
      figures["bench_poll_requests"] = cluster.pollRequests();
      figures["requests"] = requestBreakdown(counters0, scrapeCounters(cluster.ports()), n);
      if (s.errors > 0) out.fail(std::to_string(s.errors) + " submit errors: " + s.first_error);
      if (!d.finished) out.fail(d.detail);
      verifySucceeded(cluster, s.ids, figures, out);
      series = {{"done_over_time", seriesJson(d.series)}};
    });
  }

  // Latency at an open-loop rate: submit -> running and submit -> done from the statuses'
  // submitted_at / started_at / finished_at (wall ms, one machine), and the client's round trip.
  void latency(const std::string& name, double rate, double seconds) {
    int n = std::max(1, static_cast<int>(rate * seconds));
    int clients = std::clamp(static_cast<int>(rate / 10), 2, 16);
    Json params = {{"rate_per_s", rate},
                   {"tasks", n},
                   {"clients", clients},
                   {"workers", config.nodes},
                   {"source", "status timestamps (ms resolution)"}};
    guarded(name, params, [&](Json& figures, Outcome& out, Json& series) {
      Cluster cluster(config, *ensemble, config.session_ms);
      cluster.startNodes(config.nodes);
      auto ports = cluster.ports();
      std::vector<std::string> ids;
      for (int i = 0; i < n; ++i) ids.push_back(name + "-" + std::to_string(i));
      std::vector<double> rtt(n, NAN);
      std::atomic<int64_t> accepted{0}, errors{0};
      std::atomic<bool> running{true};
      auto t0 = SteadyClock::now();
      std::vector<std::thread> threads;
      for (int c = 0; c < clients; ++c) {
        threads.emplace_back([&, c] {
          auto cli = client(ports[c % ports.size()]);
          for (int i = c; i < n; i += clients) {
            std::this_thread::sleep_until(
                t0 + std::chrono::microseconds(static_cast<int64_t>(i * 1e6 / rate)));
            auto s0 = SteadyClock::now();
            auto r = cli->Post("/v1/tasks", noopTask(ids[i]).dump(), "application/json");
            if (r && r->status == 202) {
              rtt[i] = std::chrono::duration<double, std::milli>(SteadyClock::now() - s0).count();
              accepted++;
            } else {
              errors++;
            }
          }
        });
      }
      std::thread joiner([&] {
        for (auto& t : threads) t.join();
        running = false;
      });
      Drain d = drain(cluster, t0, accepted, running, std::chrono::seconds(config.stall_seconds),
                      std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000) + 180000));
      joiner.join();
      figures["submit_errors"] = errors.load();
      if (errors > 0) out.fail(std::to_string(errors) + " submit errors");
      if (!d.finished) out.fail(d.detail);
      auto all = cluster.statuses(ids);
      std::vector<double> to_running, to_done, client_rtt;
      for (int i = 0; i < n; ++i) {
        if (!std::isnan(rtt[i])) client_rtt.push_back(rtt[i]);
        auto it = all.find(ids[i]);
        if (it == all.end() || it->second.state != tasks::State::kSucceeded) continue;
        const auto& s = it->second;
        to_running.push_back(static_cast<double>(s.started_at - s.submitted_at));
        to_done.push_back(static_cast<double>(s.finished_at - s.submitted_at));
      }
      figures["submit_to_running"] = latencyFigures(to_running);
      figures["submit_to_done"] = latencyFigures(to_done);
      figures["submit_request_rtt"] = latencyFigures(client_rtt);
      verifySucceeded(cluster, ids, figures, out);
      series = {{"submit_to_done_ms", to_done}, {"submit_to_running_ms", to_running}};
    });
  }

  // Failover: kill -9 of a worker, kill -9 of the leader, SIGTERM of a worker.
  void failoverWorker(int session_ms, bool graceful) {
    std::string name = std::string(graceful ? "failover-sigterm-worker" : "failover-kill9-worker") +
                       "-" + std::to_string(session_ms) + "ms";
    int sleep_ms = session_ms + 3000;
    Json params = {{"session_timeout_ms", session_ms},
                   {"zk_tick_ms", config.zk_tick_ms},
                   {"workers", config.nodes},
                   {"tasks", 12},
                   {"task", "sleep " + std::to_string(sleep_ms) + " ms"}};
    guarded(name, params, [&](Json& figures, Outcome& out, Json& series) {
      Cluster cluster(config, *ensemble, session_ms);
      cluster.startNodes(config.nodes);
      auto cli = client(cluster.ports()[0]);
      Json specs = Json::array();
      std::vector<std::string> ids;
      for (int i = 0; i < 12; ++i) {
        ids.push_back("f" + std::to_string(i));
        specs.push_back({{"id", ids.back()}, {"type", "sleep"}, {"payload", {{"ms", sleep_ms}}}});
      }
      auto r = cli->Post("/v1/tasks/batch", Json{{"tasks", specs}}.dump(), "application/json");
      if (!r || r->status != 202) throw std::runtime_error("batch submit failed");
      if (!waitFor(
              [&] {
                auto all = cluster.liveStatuses(ids);
                return all.size() == ids.size() &&
                       std::all_of(all.begin(), all.end(), [](const auto& kv) {
                         return kv.second.state == tasks::State::kRunning;
                       });
              },
              30s, 10ms)) {
        throw std::runtime_error("tasks did not all run within 30 s");
      }
      std::string leader = cluster.leaderId();
      std::map<std::string, std::vector<std::string>> by_worker;
      for (const auto& [id, s] : cluster.liveStatuses(ids)) by_worker[s.worker].push_back(id);
      std::string victim;
      for (const auto& [w, list] : by_worker) {
        if (w != leader && !list.empty()) victim = w;
      }
      if (victim.empty()) throw std::runtime_error("no non-leader worker holds a task");
      auto victims = by_worker[victim];
      Node* node = cluster.byId(victim);
      auto t0 = SteadyClock::now();
      const int64_t t0_wall = base::wallMillis();
      if (graceful) {
        node->process->terminate();
      } else {
        node->process->kill9();
      }
      int64_t unregistered_ms = -1, exited_ms = -1, handed_off_ms = -1;
      int ended_on_victim = 0;
      bool handed = waitFor(
          [&] {
            if (unregistered_ms < 0 && !cluster.workerRegistered(victim)) {
              unregistered_ms = msSince(t0);
            }
            if (exited_ms < 0 && !node->process->alive()) exited_ms = msSince(t0);
            auto all = cluster.liveStatuses(victims);
            ended_on_victim = 0;
            bool all_moved = std::all_of(all.begin(), all.end(), [&](const auto& kv) {
              const auto& s = kv.second;
              if (s.worker == victim) {
                if (tasks::isTerminal(s.state)) ++ended_on_victim;
                return tasks::isTerminal(s.state);
              }
              return s.state == tasks::State::kRunning || tasks::isTerminal(s.state);
            });
            return all.size() == victims.size() && all_moved;
          },
          std::chrono::milliseconds(session_ms) + 20s, 5ms);
      if (handed) handed_off_ms = msSince(t0);
      figures["victim_tasks"] = victims.size();
      figures["worker_znode_gone_ms"] = unregistered_ms;
      figures["process_exited_ms"] = exited_ms;
      figures["tasks_running_elsewhere_ms"] = handed_off_ms;
      figures["tasks_finished_on_victim"] = ended_on_victim;
      series = {{"timeline",
                 {{{"event", graceful ? "SIGTERM" : "kill -9"}, {"ms", 0}},
                  {{"event", "process exited"}, {"ms", exited_ms}},
                  {{"event", "worker znode gone"}, {"ms", unregistered_ms}},
                  {{"event", "tasks running elsewhere"}, {"ms", handed_off_ms}}}}};
      if (!handed) out.fail("the victim's tasks did not move within session + 20 s");
      bool all_done = waitFor(
          [&] {
            auto all = cluster.statuses(ids);  // outcomes only
            return all.size() == ids.size() &&
                   std::all_of(all.begin(), all.end(),
                               [](const auto& kv) { return tasks::isTerminal(kv.second.state); });
          },
          std::chrono::milliseconds(2 * sleep_ms) + 30s, 50ms);
      if (!all_done) out.fail("tasks not terminal after the failover");
      // When the victim's tasks really started elsewhere: their outcomes' started_at (wall ms,
      // set when the new worker launched them). tasks_running_elsewhere_ms above is when the API
      // showed them running, which also waits for the new worker's running report (rate-limited
      // to about one per 250 ms, and only for runs older than mark_running_after).
      int64_t started_ms = -1;
      size_t started_n = 0;
      for (const auto& [id, s] : cluster.statuses(victims)) {
        if (s.worker == victim || s.started_at <= 0) continue;
        started_ms = std::max(started_ms, s.started_at - t0_wall);
        ++started_n;
      }
      figures["tasks_started_elsewhere_ms"] = started_n == victims.size() ? started_ms : -1;
      verifySucceeded(cluster, ids, figures, out);
    });
  }

  void failoverLeader(int session_ms) {
    std::string name = "failover-kill9-leader-" + std::to_string(session_ms) + "ms";
    Json params = {{"session_timeout_ms", session_ms},
                   {"zk_tick_ms", config.zk_tick_ms},
                   {"workers", config.nodes}};
    guarded(name, params, [&](Json& figures, Outcome& out, Json& series) {
      Cluster cluster(config, *ensemble, session_ms);
      cluster.startNodes(config.nodes);
      std::string leader = cluster.leaderId();
      int epoch = cluster.leaderEpoch();
      Node* node = cluster.byId(leader);
      if (node == nullptr) throw std::runtime_error("leader " + leader + " is not a bench node");
      auto ports = cluster.ports(leader);
      auto cli = client(ports[0]);
      // Warm the connection so the probe's submit is one round trip.
      cli->Get("/livez");
      auto t0 = SteadyClock::now();
      node->process->kill9();
      // A task submitted right after the kill can only be assigned by the next leader.
      auto r = cli->Post("/v1/tasks", noopTask("probe").dump(), "application/json");
      int64_t submitted_ms = msSince(t0);
      if (!r || r->status != 202) throw std::runtime_error("probe submit failed");
      int64_t new_leader_ms = -1, assigned_ms = -1;
      bool assigned = waitFor(
          [&] {
            if (new_leader_ms < 0) {
              Json l = cluster.leader();
              if (l.is_object() && l.value("epoch", -1) > epoch) new_leader_ms = msSince(t0);
            }
            auto s = cluster.liveStatuses({"probe"});
            if (s.count("probe") && s["probe"].state != tasks::State::kPending) {
              assigned_ms = msSince(t0);
              return true;
            }
            return false;
          },
          std::chrono::milliseconds(session_ms) + 20s, 5ms);
      figures["new_leader_ms"] = new_leader_ms;
      figures["first_assignment_ms"] = assigned_ms;
      series = {{"timeline",
                 {{{"event", "kill -9"}, {"ms", 0}},
                  {{"event", "probe submitted"}, {"ms", submitted_ms}},
                  {{"event", "new leader"}, {"ms", new_leader_ms}},
                  {{"event", "first assignment"}, {"ms", assigned_ms}}}}};
      if (!assigned) out.fail("no assignment by a new leader within session + 20 s");
      waitFor(
          [&] {
            auto s = cluster.statuses({"probe"});
            return s.count("probe") && tasks::isTerminal(s["probe"].state);
          },
          30s, 20ms);
      verifySucceeded(cluster, {"probe"}, figures, out);
    });
  }

  // A leader killed while N tasks are pending: how long until the next leader assigns, when it
  // must first load the whole backlog. Two API-only nodes (the leader and a standby); the tasks
  // go in with no worker running; then the leader is killed and a worker (not a candidate)
  // started. The first completion is read from the worker's /metrics.
  void failoverLeaderBacklog(int session_ms) {
    int n = config.leader_backlog_tasks;
    Json params = {{"session_timeout_ms", session_ms},
                   {"zk_tick_ms", config.zk_tick_ms},
                   {"pending", n},
                   {"workers", 1}};
    guarded("failover-leader-backlog", params, [&](Json& figures, Outcome& out, Json& series) {
      Cluster cluster(config, *ensemble, session_ms);
      cluster.start("a1", /*worker=*/false);
      // a1 is the only candidate yet, so it leads.
      if (!waitFor([&] { return !cluster.leaderId().empty(); }, 30s, 10ms)) {
        throw std::runtime_error("no leader");
      }
      cluster.start("a2", /*worker=*/false);
      int epoch = cluster.leaderEpoch();
      Submit s;
      submitTasks(s, cluster.ports(), "lb-", n, 1000, 2);
      if (s.errors > 0) out.fail(std::to_string(s.errors) + " submit errors: " + s.first_error);
      figures["submit_seconds"] = s.seconds;
      auto t0 = SteadyClock::now();
      cluster.byId("a1")->process->kill9();
      cluster.start("w1", /*worker=*/true, /*leader=*/false);
      int64_t new_leader_ms = -1, first_done_ms = -1;
      bool done = waitFor(
          [&] {
            if (new_leader_ms < 0) {
              Json l = cluster.leader();
              if (l.is_object() && l.value("epoch", -1) > epoch) new_leader_ms = msSince(t0);
            }
            if (cluster.completed() > 0) {
              first_done_ms = msSince(t0);
              return true;
            }
            return false;
          },
          std::chrono::milliseconds(session_ms) + 300s, 20ms);
      figures["new_leader_ms"] = new_leader_ms;
      figures["first_completion_ms"] = first_done_ms;
      figures["load_before_first_assignment_ms"] =
          first_done_ms >= 0 && new_leader_ms >= 0 ? first_done_ms - new_leader_ms : -1;
      pid_t a2 = cluster.byId("a2")->process->pid();
      figures["new_leader_rss_mib"] = rssMiB(a2);
      series = {{"timeline",
                 {{{"event", "kill -9"}, {"ms", 0}},
                  {{"event", "new leader"}, {"ms", new_leader_ms}},
                  {{"event", "first completion"}, {"ms", first_done_ms}}}}};
      if (!done) out.fail("nothing completed within session + 300 s");
    });
  }

  // Backlog: N tasks submitted with no worker running, then drained by freshly started workers.
  void backlog() {
    int n = config.backlog_tasks;
    Json params = {{"tasks", n},
                   {"per_request", 1000},
                   {"clients", 2},
                   {"workers", config.backlog_workers},
                   {"session_timeout_ms", config.backlog_session_ms},
                   {"zk_heap", config.zk_heap},
                   {"api_nodes", 1}};
    guarded("backlog", params, [&](Json& figures, Outcome& out, Json& series) {
      Cluster cluster(config, *ensemble, config.backlog_session_ms);
      cluster.start("api", /*worker=*/false);
      if (!waitFor([&] { return !cluster.leaderId().empty(); }, 30s, 10ms)) {
        throw std::runtime_error("no leader");
      }
      figures["mntr_before"] = mntrSummary(*ensemble);
      Submit s;
      submitTasks(s, cluster.ports(), "bl-", n, 1000, 2);
      figures["submit_seconds"] = s.seconds;
      figures["submit_rate"] = s.accepted / std::max(1e-9, s.seconds);
      figures["submit_errors"] = s.errors.load();
      figures["submit_retries"] = s.retries.load();
      if (s.errors > 0) out.fail(std::to_string(s.errors) + " submit errors: " + s.first_error);
      figures["mntr_after_submit"] = mntrSummary(*ensemble);
      // The api node is the only candidate, so it leads and holds the pending index.
      pid_t leader_pid = cluster.nodes().front()->process->pid();
      figures["leader_rss_mib_after_submit"] = rssMiB(leader_pid);
      auto t0 = SteadyClock::now();
      for (int i = 0; i < config.backlog_workers; ++i) cluster.start("w" + std::to_string(i + 1));
      figures["workers_started_s"] = secondsSince(t0);
      std::atomic<bool> submitting{false};
      Drain d =
          drain(cluster, t0, s.accepted, submitting, std::chrono::seconds(config.stall_seconds),
                std::chrono::milliseconds(static_cast<int64_t>(n) * 100 + 120000), 250ms);
      if (d.finished) {
        figures["drain_seconds"] = d.seconds;
        figures["drain_rate"] = s.accepted / d.seconds;
      } else {
        out.fail(d.detail);
      }
      figures["mntr_after_drain"] = mntrSummary(*ensemble);
      figures["leader_rss_mib_after_drain"] = rssMiB(leader_pid);
      verifySucceeded(cluster, s.ids, figures, out, /*retained=*/100000);
      series = {{"done_over_time", seriesJson(d.series)}};
    });
  }

  void idle() {
    Json params = {{"nodes", config.nodes}, {"window_s", config.idle_seconds}};
    guarded("idle", params, [&](Json& figures, Outcome&, Json&) {
      Cluster cluster(config, *ensemble, config.session_ms);
      cluster.startNodes(config.nodes);
      // Let start-up work (registration, election, first reconcile) settle: wait until the CPU
      // of every node stays flat over a 1 s window, at most 15 s.
      std::vector<pid_t> pids;
      for (auto& n : cluster.nodes()) pids.push_back(n->process->pid());
      auto total = [&] {
        double s = 0;
        for (pid_t p : pids) s += cpuSeconds(p);
        return s;
      };
      auto settle_deadline = SteadyClock::now() + 15s;
      while (SteadyClock::now() < settle_deadline) {
        double a = total();
        std::this_thread::sleep_for(1s);  // a measurement window, not a wait for an event
        if (total() - a < 0.02 * static_cast<double>(pids.size())) break;
      }
      std::vector<double> c0;
      for (pid_t p : pids) c0.push_back(cpuSeconds(p));
      auto t0 = SteadyClock::now();
      std::this_thread::sleep_for(std::chrono::milliseconds(
          static_cast<int64_t>(config.idle_seconds * 1000)));  // the measurement window
      double window = secondsSince(t0);
      Json per_node = Json::array();
      double max_cpu = 0, max_rss = 0;
      for (size_t i = 0; i < pids.size(); ++i) {
        double cpu = (cpuSeconds(pids[i]) - c0[i]) / window * 100;
        double rss = rssMiB(pids[i]);
        max_cpu = std::max(max_cpu, cpu);
        max_rss = std::max(max_rss, rss);
        per_node.push_back(
            {{"node", cluster.nodes()[i]->id}, {"cpu_percent_of_one_core", cpu}, {"rss_mib", rss}});
      }
      figures["nodes"] = per_node;
      figures["max_cpu_percent"] = max_cpu;
      figures["max_rss_mib"] = max_rss;
    });
  }

  // ZooKeeper's limits on one client connection: pipelined creates (~1000 in flight) and multis
  // of 100 creates (10 in flight = 1000 ops), 100-byte znodes.
  void rawLimits(const std::string& name, ZkCluster& zk) {
    Json params = {{"zookeeper", zk.isEnsemble() ? "ensemble-3" : "standalone"},
                   {"force_sync", zk.options().force_sync},
                   {"creates", config.raw_creates},
                   {"multis_of_100", config.raw_multis},
                   {"in_flight_ops", 1000}};
    guarded(name, params, [&](Json& figures, Outcome& out, Json&) {
      auto c = coord::ZkCoordination::connect({zk.connectString(), 10000ms});
      if (!c) throw std::runtime_error(c.error().toString());
      auto& zkc = **c;
      if (!zkc.waitConnected(30s)) throw std::runtime_error("no session");
      std::string root = local::uniqueRoot();
      for (const auto& p : {root, root + "/c", root + "/m"}) {
        auto r = zkc.create({p, "", coord::CreateMode::kPersistent, {}}).waitFor(10s);
        if (!r || !*r) throw std::runtime_error("cannot create " + p);
      }
      std::string data(100, 'x');
      int errors = 0;
      // Pipelined single creates.
      {
        std::vector<coord::Future<std::string>> window;
        auto t0 = SteadyClock::now();
        size_t head = 0;
        for (int i = 0; i < config.raw_creates; ++i) {
          if (window.size() - head >= 1000) {
            auto r = window[head++].waitFor(30s);
            if (!r || !*r) ++errors;
          }
          window.push_back(zkc.create(
              {root + "/c/n" + std::to_string(i), data, coord::CreateMode::kPersistent, {}}));
        }
        for (; head < window.size(); ++head) {
          auto r = window[head].waitFor(30s);
          if (!r || !*r) ++errors;
        }
        figures["creates_per_s"] = config.raw_creates / secondsSince(t0);
      }
      // Multis of 100 creates, 10 in flight.
      {
        std::vector<coord::Future<std::vector<coord::OpResult>>> window;
        size_t head = 0;
        auto t0 = SteadyClock::now();
        for (int m = 0; m < config.raw_multis; ++m) {
          if (window.size() - head >= 10) {
            auto r = window[head++].waitFor(30s);
            if (!r || !*r) ++errors;
          }
          std::vector<coord::Op> ops;
          for (int i = 0; i < 100; ++i) {
            ops.push_back(coord::CreateOp{root + "/m/n" + std::to_string(m * 100 + i),
                                          data,
                                          coord::CreateMode::kPersistent,
                                          {}});
          }
          window.push_back(zkc.multi(std::move(ops)));
        }
        for (; head < window.size(); ++head) {
          auto r = window[head].waitFor(30s);
          if (!r || !*r) ++errors;
        }
        double secs = secondsSince(t0);
        figures["multi100_tx_per_s"] = config.raw_multis / secs;
        figures["multi100_znodes_per_s"] = config.raw_multis * 100.0 / secs;
      }
      figures["errors"] = errors;
      if (errors > 0) out.fail(std::to_string(errors) + " ZooKeeper errors");
      zkc.close();
    });
  }

  Json find(const std::string& name) {
    for (auto& s : scenarios) {
      if (s["scenario"] == name) return s;
    }
    return nullptr;
  }

  // Drover's figures as shares of the raw limits measured on the same ensemble.
  Json ratios() {
    Json out = Json::object();
    Json raw = find("zk-limits-ensemble");
    if (raw.is_null() || !raw["figures"].contains("creates_per_s")) return out;
    double creates = raw["figures"]["creates_per_s"];
    double znodes = raw["figures"]["multi100_znodes_per_s"];
    auto add = [&](const std::string& scenario, const std::string& key) {
      Json s = find(scenario);
      if (s.is_null() || !s["figures"].contains(key)) return;
      double v = s["figures"][key];
      out[scenario + "." + key] = {
          {"value", v}, {"of_pipelined_creates", v / creates}, {"of_multi100_znodes", v / znodes}};
    };
    add("throughput-batch", "e2e_rate");
    add("throughput-batch", "submit_rate");
    add("throughput-single", "e2e_rate");
    add("throughput-single", "submit_rate");
    add("backlog", "submit_rate");
    add("backlog", "drain_rate");
    return out;
  }

  void run() {
    ZkCluster::Options zo;
    zo.force_sync = true;
    zo.jvm_heap = config.zk_heap;
    zo.jvm_args = config.zk_jvm_args;
    zo.tick_time_ms = config.zk_tick_ms;
    zo.max_session_timeout_ms = 20000;
    if (!config.keep_zk_logs.empty()) zo.keep_logs_dir = config.keep_zk_logs + "/ensemble";
    std::cout << "[ run ] starting a 3-node ZooKeeper ensemble (forceSync=yes, tickTime "
              << config.zk_tick_ms << " ms)" << std::endl;
    ensemble = ZkCluster::ensemble(3, zo);

    if (config.warmup_tasks > 0) {
      throughput("warmup", *ensemble, config.nodes, config.warmup_tasks, config.batch_size,
                 config.batch_clients);
      peak_rate = 0;  // not a measurement: half-peak latency uses the measured scenarios only
    }
    if (config.wants("idle")) idle();
    if (config.wants("throughput-batch")) {
      throughput("throughput-batch", *ensemble, config.nodes, config.batch_tasks, config.batch_size,
                 config.batch_clients);
    }
    if (config.wants("throughput-single")) {
      throughput("throughput-single", *ensemble, config.nodes, config.single_tasks, 0,
                 config.single_clients);
    }
    if (config.wants("latency-light")) {
      latency("latency-light", config.light_rate, config.latency_seconds);
    }
    if (config.wants("latency-half-peak")) {
      // Half the best end-to-end rate this run measured (the light rate if none was).
      double half = std::max(config.light_rate, peak_rate / 2);
      latency("latency-half-peak", half, config.latency_seconds);
    }
    for (int session : config.failover_sessions) {
      if (config.wants("failover-kill9-worker")) failoverWorker(session, /*graceful=*/false);
      if (config.failover_leader && config.wants("failover-kill9-leader")) failoverLeader(session);
      if (config.failover_graceful && config.wants("failover-sigterm-worker")) {
        failoverWorker(session, /*graceful=*/true);
      }
    }
    for (int w : config.scaling_workers) {
      std::string name = "scaling-" + std::to_string(w);
      if (!config.wants(name)) continue;
      throughput(name, *ensemble, w, config.scaling_tasks, config.batch_size, config.batch_clients);
    }
    if (config.wants("backlog")) backlog();
    if (config.leader_backlog_tasks > 0 && config.wants("failover-leader-backlog")) {
      failoverLeaderBacklog(config.session_ms);
    }
    if (config.wants("zk-limits")) rawLimits("zk-limits-ensemble", *ensemble);
    if (config.standalone && (config.wants("zk-limits") || config.wants("throughput-batch"))) {
      std::cout << "[ run ] starting a standalone ZooKeeper (forceSync=yes)" << std::endl;
      if (!config.keep_zk_logs.empty()) zo.keep_logs_dir = config.keep_zk_logs + "/standalone";
      standalone = ZkCluster::standalone(zo);
      if (config.wants("zk-limits")) rawLimits("zk-limits-standalone", *standalone);
      if (config.wants("throughput-batch")) {
        throughput("throughput-batch-standalone", *standalone, config.nodes, config.batch_tasks,
                   config.batch_size, config.batch_clients);
      }
    }
  }
};

Json machine() {
  struct utsname u {};
  uname(&u);
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  std::string cpu = shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
  return {{"nproc", std::thread::hardware_concurrency()},
          {"memory_mib", static_cast<double>(pages) * page / (1024.0 * 1024.0)},
          {"cpu", cpu.empty() ? "" : cpu.substr(cpu.find_first_not_of(' '))},
          {"kernel", std::string(u.sysname) + " " + u.release},
          {"zookeeper", shell("dpkg-query -W -f='${Version}' zookeeper 2>/dev/null")}};
}

std::string isoNow() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace
}  // namespace drover::bench

int main(int argc, char** argv) {
  using drover::bench::Config;
  Config config;
  bool smoke = false;
  std::string commit;
  CLI::App app{"Drover benchmark driver: starts ZooKeeper and drover nodes, runs the scenarios"};
  app.add_option("--drover", config.drover, "Path to the drover binary")->required();
  app.add_option("--out", config.out, "Write the results JSON here");
  app.add_flag("--smoke", smoke, "Tiny sizes (CI): checks that nothing is lost, asserts no speed");
  app.add_option("--nodes", config.nodes, "Drover nodes in the main scenarios")
      ->capture_default_str();
  app.add_option("--slots", config.slots, "Slots per worker")->capture_default_str();
  app.add_option("--prefetch", config.prefetch, "Nodes' --prefetch (-1: their default, 16)")
      ->capture_default_str();
  app.add_option("--batch-tasks", config.batch_tasks)->capture_default_str();
  app.add_option("--batch-size", config.batch_size)->capture_default_str();
  app.add_option("--single-tasks", config.single_tasks)->capture_default_str();
  app.add_option("--single-clients", config.single_clients)->capture_default_str();
  app.add_option("--light-rate", config.light_rate, "tasks/s")->capture_default_str();
  app.add_option("--latency-seconds", config.latency_seconds)->capture_default_str();
  app.add_option("--failover-sessions", config.failover_sessions, "session timeouts, ms")
      ->capture_default_str();
  app.add_option("--backlog-tasks", config.backlog_tasks)->capture_default_str();
  app.add_option("--leader-backlog-tasks", config.leader_backlog_tasks,
                 "Pending tasks when failover-leader-backlog kills the leader (0: skip)")
      ->capture_default_str();
  app.add_option("--backlog-workers", config.backlog_workers)->capture_default_str();
  app.add_option("--backlog-session-ms", config.backlog_session_ms)->capture_default_str();
  app.add_option("--stall-seconds", config.stall_seconds,
                 "A drain with no progress for this long fails the scenario")
      ->capture_default_str();
  app.add_option("--scaling-workers", config.scaling_workers)->capture_default_str();
  app.add_option("--scaling-tasks", config.scaling_tasks)->capture_default_str();
  app.add_option("--idle-seconds", config.idle_seconds)->capture_default_str();
  app.add_option("--raw-creates", config.raw_creates)->capture_default_str();
  app.add_option("--raw-multis", config.raw_multis)->capture_default_str();
  app.add_option("--zk-heap", config.zk_heap, "Each ZooKeeper server's -Xmx")
      ->capture_default_str();
  app.add_option("--zk-jvm-arg", config.zk_jvm_args,
                 "An extra JVM argument for every ZooKeeper server (repeatable)");
  app.add_option("--zk-tick-ms", config.zk_tick_ms,
                 "The servers' tickTime (session expiry granularity), ms")
      ->check(CLI::Range(50, 2000))
      ->capture_default_str();
  app.add_option("--keep-zk-logs", config.keep_zk_logs,
                 "Keep evidence in this directory: each ZooKeeper server's log, zoo.cfg and JVM "
                 "GC log, and every drover node's output (off by default)");
  app.add_option("--warmup-tasks", config.warmup_tasks,
                 "No-op tasks run before measuring, to warm the ZooKeeper JVMs (0: none)")
      ->capture_default_str();
  app.add_flag("!--no-standalone", config.standalone, "Skip the standalone comparison");
  app.add_option("--only", config.only,
                 "Run only the scenarios whose names start with these (e.g. throughput-batch "
                 "latency backlog zk-limits)");
  app.add_option("--celery-peer", config.celery_peer,
                 "Run this Celery peer script (bench/celery_peer.py) after Drover's scenarios, "
                 "with the same sizes, and print Drover's figures as ratios to it");
  app.add_option("--celery-persistence", config.celery_persistence,
                 "The peer's Redis persistence per run: everysec (AOF) and/or none")
      ->check(CLI::IsMember({"everysec", "none"}))
      ->capture_default_str();
  app.add_option("--git-commit", commit, "Commit measured (default: git rev-parse HEAD)");
  CLI11_PARSE(app, argc, argv);
  if (smoke) drover::bench::applySmoke(config);

  drover::bench::Bench bench;
  bench.config = config;
  auto t0 = std::chrono::steady_clock::now();
  try {
    bench.run();
  } catch (const std::exception& e) {
    std::cerr << "drover_bench: " << e.what() << "\n";
    bench.any_failed = true;
    bench.scenarios.push_back({{"scenario", "setup"}, {"ok", false}, {"failure", e.what()}});
  }
  nlohmann::json peer = nullptr, peer_ratios = nlohmann::json::object();
  if (!config.celery_peer.empty() &&
      (config.wants("throughput-batch") || config.wants("throughput-single") ||
       config.wants("latency-light"))) {
    // ZooKeeper stopped first: the peer gets the machine as Drover had it.
    bench.ensemble.reset();
    bench.standalone.reset();
    std::cout << "[ run ] the Celery peer: " << config.celery_peer << std::endl;
    auto r = drover::bench::runCeleryPeer({.script = config.celery_peer,
                                           .batch_tasks = config.batch_tasks,
                                           .batch_clients = config.batch_clients,
                                           .single_tasks = config.single_tasks,
                                           .single_clients = config.single_clients,
                                           .light_rate = config.light_rate,
                                           .latency_seconds = config.latency_seconds,
                                           .concurrency = config.nodes * config.slots,
                                           .persistence = config.celery_persistence,
                                           .only = config.only,
                                           .stall_seconds = config.stall_seconds});
    peer = r.doc;
    if (r.skipped) {
      std::cout << "[ skipped ] the Celery peer: " << r.detail << std::endl;
      peer = {{"skipped", r.detail}};
    } else if (!r.ok) {
      std::cout << "[ FAILED ] the Celery peer: " << r.detail << std::endl;
      bench.any_failed = true;
      if (!peer.is_object()) peer = nlohmann::json::object();
      peer["failure"] = r.detail;
    }
    peer_ratios = drover::bench::ratiosToPeer(bench.scenarios, peer);
  }
  nlohmann::json doc = {
      {"git_commit",
       commit.empty() ? drover::bench::shell("git rev-parse HEAD 2>/dev/null") : commit},
      {"git_dirty",
       commit.empty() &&
           !drover::bench::shell("git status --porcelain 2>/dev/null | head -1").empty()},
      {"date", drover::bench::isoNow()},
      {"machine", drover::bench::machine()},
      {"smoke", config.smoke},
      {"protocol", 2},
      {"zk_tick_ms", config.zk_tick_ms},
      {"zk_jvm_args", config.zk_jvm_args},
      {"total_seconds", drover::bench::secondsSince(t0)},
      {"scenarios", bench.scenarios},
      {"ratios_to_zookeeper_limits", bench.ratios()},
      {"peer_celery", peer},
      {"ratios_to_celery", peer_ratios},
      {"ok", !bench.any_failed}};
  std::cout << "[ ratios ] " << doc["ratios_to_zookeeper_limits"].dump() << "\n";
  std::cout << drover::bench::ratiosText(peer_ratios);
  if (!config.out.empty()) {
    std::filesystem::path p(config.out);
    if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
    std::ofstream(config.out) << doc.dump(1) << "\n";
    std::cout << "[ wrote ] " << config.out << "\n";
  }
  std::cout << (bench.any_failed ? "[ FAILED ] some scenarios failed\n" : "[ PASSED ]\n");
  return bench.any_failed ? 1 : 0;
}

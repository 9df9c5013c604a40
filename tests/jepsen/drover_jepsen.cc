// drover_jepsen: the fault suite of RELIABILITY.md. Starts a 3-node ZooKeeper ensemble and N real
// `drover node` processes, has client threads submit `exec` tasks (recording every request and
// its answer), lets a seeded nemesis inject faults, heals, waits for the drain, dumps the tree
// from a fresh session and checks P1-P9. Exit 0 when every property holds, 1 when one does not,
// 2 when the run itself could not be made. docs/FAULTS.md tells how to read the output folder.
#include <fmt/format.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include "base/eventually.h"
#include "coord/zk/zk_coordination.h"
#include "jepsen/checker.h"
#include "jepsen/fleet.h"
#include "jepsen/nemesis.h"
#include "jepsen/tree_dump.h"

namespace drover::jepsen {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Options {
  uint64_t seed = 0;
  int duration_s = 60;
  int nodes = 4;
  int clients = 3;
  int session_ms = 2000;
  int drain_s = 90;
  std::string out = "jepsen-out";
  std::string drover;
  std::string plant;  // "", lost, phantom, leftover, crash
};

// The clients: threads submitting exec tasks with ids of their own, recording each request.
class Clients {
 public:
  Clients(const Options& o, std::vector<std::string> urls, Clock::time_point t0)
      : o_(o), urls_(std::move(urls)), t0_(t0), history_(o.out + "/history.jsonl") {
    // A node may run under another uid (partition fault), and --out may sit below a folder that
    // uid cannot enter (a mktemp clone): the log lives in a folder of its own under /tmp.
    char dir[] = "/tmp/drover-jepsen-XXXXXX";
    if (::mkdtemp(dir) != nullptr && ::chmod(dir, 0755) == 0) {
      log_path_ = std::string(dir) + "/executions.log";
    } else {
      log_path_ = o.out + "/executions.log";
    }
    std::ofstream(log_path_).flush();
    ::chmod(log_path_.c_str(), 0666);  // a node may run under another uid (partition fault)
  }

  ~Clients() { stop(); }

  void start() {
    for (int c = 0; c < o_.clients; ++c) threads_.emplace_back([this, c] { loop(c); });
  }
  void stop() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  std::vector<Request> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  const std::string& executionLog() const { return log_path_; }

 private:
  int64_t nowMs() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0_).count();
  }

  Json body(const std::string& id, int sleep_ms) const {
    // One O_APPEND line per run, printed too so the recorded result names its run ($$).
    std::string script =
        "line=\"$0 ${DROVER_ATTEMPT:-?} ${DROVER_WORKER:-?} $$\"; echo \"$line\" >> \"$1\"; "
        "echo \"$line\"; sleep \"$2\"";
    return {{"id", id},
            {"type", "exec"},
            {"payload",
             {{"argv",
               {"sh", "-c", script, id, log_path_,
                fmt::format("{}.{:03d}", sleep_ms / 1000, sleep_ms % 1000)}}}},
            {"max_attempts", 5}};
  }

  Request submit(int c, std::mt19937_64& rng, const std::string& kind, const Json& b) {
    Request r;
    r.client = c;
    r.kind = kind;
    r.id = b.value("id", "");
    r.body = b;
    size_t n = rng() % urls_.size();
    r.node = fmt::format("n{}", n + 1);
    r.start_ms = nowMs();
    auto reply = httpPost(urls_[n], "/v1/tasks", b.dump(), 12s);
    r.end_ms = nowMs();
    r.status = reply.status;
    std::lock_guard lock(mu_);
    requests_.push_back(r);
    history_ << toJson(r).dump() << "\n";
    history_.flush();
    return r;
  }

  void loop(int c) {
    std::mt19937_64 rng(o_.seed * 1000003 + static_cast<uint64_t>(c) + 1);
    for (int n = 1; !stop_; ++n) {
      std::string id = fmt::format("c{}-{}", c, n);
      int sleep_ms = static_cast<int>(rng() % 301);
      Json b = body(id, sleep_ms);
      Request r = submit(c, rng, "first", b);
      // An unknown outcome is retried with the same id and spec, as the API says is safe.
      for (int t = 0; t < 3 && r.unknown() && !stop_; ++t) {
        std::this_thread::sleep_for(200ms);  // a client's pause before retrying, not a wait
        r = submit(c, rng, "retry", b);
      }
      if (rng() % 10 == 0) submit(c, rng, "repeat", b);
      if (rng() % 20 == 0) submit(c, rng, "conflict", body(id, sleep_ms + 1));
      // Seeded think time between submits, so the load varies; not a wait on anything.
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 60));
    }
  }

  const Options& o_;
  std::vector<std::string> urls_;
  Clock::time_point t0_;
  std::string log_path_;
  std::atomic<bool> stop_ = false;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::ofstream history_;
  std::vector<Request> requests_;
};

std::vector<Execution> readExecutions(const std::string& path) {
  std::vector<Execution> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (auto e = parseExecution(line)) out.push_back(*e);
  }
  return out;
}

int64_t msSince(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

int run(const Options& o) {
  std::filesystem::remove_all(o.out);
  std::filesystem::create_directories(o.out);
  ::chmod(o.out.c_str(), 0755);
  std::cout << fmt::format(
                   "[ jepsen ] seed {} (reproduce: drover_jepsen --seed {} --duration-s {} "
                   "--nodes {} --clients {}), output in {}\n",
                   o.seed, o.seed, o.duration_s, o.nodes, o.clients, o.out)
            << std::flush;
  PartitionSupport partition = probePartition();
  if (!partition.available) {
    std::cout << "[ jepsen ] the partition fault is skipped: " << partition.reason << "\n";
  }
  FleetOptions fo;
  fo.drover = o.drover;
  fo.out = o.out;
  fo.nodes = o.nodes;
  fo.session_timeout_ms = o.session_ms;
  if (partition.available) {
    fo.partition_uid = partition.uid;
    fo.partition_node = o.nodes - 1;
  }
  auto t_setup = Clock::now();
  Fleet fleet(fo);
  std::cout << fmt::format("[ jepsen ] ensemble and {} nodes up in {} ms\n", o.nodes,
                           msSince(t_setup))
            << std::flush;

  auto t0 = Clock::now();
  Clients clients(o, fleet.nodeUrls(), t0);
  Nemesis nemesis(fleet, o.seed, t0, o.out + "/faults.jsonl", partition);
  clients.start();
  nemesis.run(std::chrono::seconds(o.duration_s));
  clients.stop();
  std::cout << fmt::format("[ jepsen ] {} ms: faults healed at {} ms, clients stopped; draining\n",
                           msSince(t0), nemesis.lastHealMs())
            << std::flush;

  // The drain and the dump: a fresh session of our own.
  auto zc = coord::ZkCoordination::connect({fleet.zk().connectString(), 10000ms});
  if (!zc || !(*zc)->waitConnected(60s)) {
    std::cerr << "[ jepsen ] cannot connect to ZooKeeper for the drain\n";
    return 2;
  }
  auto& coord = **zc;
  tasks::Layout layout(fo.zk_root);
  int64_t drained_ms = -1;
  if (base::eventually(
          [&] {
            auto tokens = countTokens(coord, layout);
            return tokens && *tokens == 0;
          },
          std::chrono::seconds(o.drain_s), 100ms)) {
    drained_ms = msSince(t0);
  }
  std::cout << fmt::format("[ jepsen ] drained at {} ms\n", drained_ms) << std::flush;
  // Membership and the event log settle within a few sweeps once the work is done.
  base::eventually(
      [&] {
        auto s = settled(coord, layout, fleet.size());
        return s && *s;
      },
      30s, 200ms);
  std::cout << fmt::format("[ jepsen ] {} ms: dumping the tree\n", msSince(t0)) << std::flush;

  std::string planted;
  if (!o.plant.empty()) {
    planted = plant(coord, layout, o.plant, clients.requests(), [&](int sig) {
      fleet.signal(0, sig);
      fleet.reapCrashed();
      base::eventually([&] { return !fleet.running(0); }, 10s, 20ms);
    });
    std::cout << "[ plant ] " << planted << "\n" << std::flush;
  }

  // A request can time out while the ensemble settles after a restart: try the dump again.
  auto tree = dumpTree(coord, layout);
  for (int attempt = 2; !tree && attempt <= 5; ++attempt) {
    std::cout << "[ jepsen ] dump failed (" << tree.error() << "); trying again\n" << std::flush;
    coord.waitConnected(30s);
    tree = dumpTree(coord, layout);
  }
  if (!tree) {
    std::cerr << "[ jepsen ] cannot dump the tree: " << tree.error() << "\n";
    return 2;
  }
  std::ofstream(o.out + "/tree.json") << toJson(*tree).dump(1) << "\n";
  int live = 0;
  for (int i = 0; i < fleet.size(); ++i) live += fleet.running(i) ? 1 : 0;
  fleet.stopAll();

  CheckInput in;
  in.requests = clients.requests();
  in.executions = readExecutions(clients.executionLog());
  in.tree = std::move(*tree);
  in.nodes = fleet.runs();
  in.faults = nemesis.faults();
  in.live_nodes = live;
  in.last_heal_ms = nemesis.lastHealMs();
  in.drained_ms = drained_ms;
  in.recovery_bound_ms = 30000;
  in.max_epoch_seen = fleet.maxEpochSeen();
  CheckReport report = check(in);
  std::string summary = summarize(report);
  std::ofstream(o.out + "/report.txt") << summary;
  std::cout << summary << std::flush;
  std::cout << fmt::format("[ jepsen ] seed {}; output in {}\n", o.seed, o.out);
  return report.ok() ? 0 : 1;
}

}  // namespace
}  // namespace drover::jepsen

int main(int argc, char** argv) {
  drover::jepsen::Options o;
  CLI::App app{"drover_jepsen: the fault suite (docs/FAULTS.md)"};
  bool seed_given = false;
  app.add_option("--seed", o.seed, "Seed of the fault schedule and the clients (default: time)")
      ->each([&](const std::string&) { seed_given = true; });
  app.add_option("--duration-s", o.duration_s, "Seconds of faults")->capture_default_str();
  app.add_option("--nodes", o.nodes, "drover nodes")
      ->capture_default_str()
      ->check(CLI::Range(2, 9));
  app.add_option("--clients", o.clients, "client threads")->capture_default_str();
  app.add_option("--session-timeout-ms", o.session_ms, "nodes' ZooKeeper session timeout")
      ->capture_default_str();
  app.add_option("--drain-s", o.drain_s, "deadline of the drain after the last heal")
      ->capture_default_str();
  app.add_option("--out", o.out, "output folder (emptied first)")->capture_default_str();
  app.add_option("--drover", o.drover, "the drover binary")->required();
  app.add_option("--plant", o.plant,
                 "plant a violation before the check (checker self-test): lost, phantom, "
                 "leftover, crash")
      ->check(CLI::IsMember({"lost", "phantom", "leftover", "crash"}));
  CLI11_PARSE(app, argc, argv);
  if (!seed_given) {
    o.seed = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) %
             1000000000;
  }
  try {
    return drover::jepsen::run(o);
  } catch (const std::exception& e) {
    std::cerr << "[ jepsen ] the run could not be made: " << e.what() << "\n";
    return 2;
  }
}

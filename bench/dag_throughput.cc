// A 10,000-task DAG end to end (docs/WORKFLOWS.md "DAGs"): a standalone ZooKeeper and `--nodes`
// drover nodes on protocol 2. Shape: one root; `--width` chains of `--depth` noop tasks each
// (the first task of every chain depends on the root: a fan-out of `--width`; each next task on
// the one before it); one last task depends on the ends of every chain (a fan-in of `--width`).
// 100 x 100 is 10,002 tasks. Submitted in dependency order as batches of 1,000 (ids of earlier
// batches are existing tasks); timed from the first submit until the fan-in task succeeded.
// Prints tasks/s; fails (exit 1) when the last task does not succeed. By hand:
//   build/bench/dag_throughput --drover build/src/app/drover
#include <fmt/format.h>
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/clock.h"
#include "base/eventually.h"
#include "bench_nodes.h"
#include "local/zk_cluster.h"

namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

struct Config {
  std::string drover;
  int nodes = 2;
  int width = 100;
  int depth = 100;
  int slots = 16;
};

int run(const Config& c) {
  auto zk = drover::local::ZkCluster::standalone();
  auto fleet = drover::bench::startBenchNodes(c.drover, zk->connectString(), "/dag-bench", "dag",
                                              c.nodes, c.slots);
  if (!fleet) return 1;
  const std::vector<int>& ports = fleet->ports;
  httplib::Client api("127.0.0.1", ports[0]);
  api.set_read_timeout(60);
  // Every task in dependency order.
  std::vector<Json> tasks;
  auto noop = [](std::string id, std::vector<std::string> deps) {
    Json t = {{"id", std::move(id)}, {"type", "noop"}, {"max_attempts", 1}};
    if (!deps.empty()) t["depends_on"] = std::move(deps);
    return t;
  };
  tasks.push_back(noop("root", {}));
  for (int k = 0; k < c.depth; ++k) {
    for (int j = 0; j < c.width; ++j) {
      tasks.push_back(noop(fmt::format("n{}-{}", k, j),
                           {k == 0 ? std::string("root") : fmt::format("n{}-{}", k - 1, j)}));
    }
  }
  std::vector<std::string> ends;
  for (int j = 0; j < c.width; ++j) ends.push_back(fmt::format("n{}-{}", c.depth - 1, j));
  tasks.push_back(noop("fan-in", ends));

  const auto t0 = std::chrono::steady_clock::now();
  for (size_t from = 0; from < tasks.size(); from += 1000) {
    Json batch = {{"tasks", Json::array()}};
    for (size_t i = from; i < std::min(tasks.size(), from + 1000); ++i) {
      batch["tasks"].push_back(tasks[i]);
    }
    auto r = api.Post("/v1/tasks/batch", batch.dump(), "application/json");
    if (!r || r->status != 202) {
      std::cerr << "submit failed: " << (r ? r->body : "no answer") << "\n";
      return 1;
    }
  }
  const double submit_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string state;
  drover::base::eventually(
      [&] {
        auto r = api.Get("/v1/tasks/fan-in?wait=30");
        if (!r || r->status != 200) return false;
        state = Json::parse(r->body, nullptr, false).value("state", "");
        return state == "succeeded" || state == "failed" || state == "cancelled";
      },
      600s, 100ms);
  const double total_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (state != "succeeded") {
    std::cerr << "the fan-in task ended '" << state << "'\n";
    return 1;
  }
  std::cout << fmt::format(
      "dag throughput: {} tasks (root -> {} chains of {} -> fan-in) on {} nodes x {} slots "
      "(protocol 2): submitted in {:.2f} s, done in {:.2f} s: {:.0f} tasks/s\n",
      tasks.size(), c.width, c.depth, c.nodes, c.slots, submit_s, total_s,
      static_cast<double>(tasks.size()) / total_s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"A 10,000-task DAG end to end on real ZooKeeper (protocol 2)"};
  app.add_option("--drover", c.drover, "Path to the drover binary")->required();
  app.add_option("--nodes", c.nodes)->capture_default_str();
  app.add_option("--width", c.width, "Fan-out and fan-in (at most 100)")->capture_default_str();
  app.add_option("--depth", c.depth, "Tasks per chain")->capture_default_str();
  app.add_option("--slots", c.slots)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return run(c);
  } catch (const std::exception& e) {
    std::cerr << "dag_throughput: " << e.what() << "\n";
    return 1;
  }
}

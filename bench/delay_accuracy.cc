// How late delayed tasks start (docs/WORKFLOWS.md "Delayed tasks"): a standalone ZooKeeper and
// `--nodes` drover nodes on protocol 2; `--tasks` noop tasks in batches of 100, each with its
// own run_at spread evenly over `--spread-ms` starting `--lead-ms` after the submit; then every
// task's recorded started_at minus its run_at. Prints p50, p99 and max (ms) and fails (exit 1)
// when a task is lost or starts early. Run by `make bench` (PERFORMANCE.md) and by hand:
//   build/bench/delay_accuracy --drover build/src/app/drover
#include <fmt/format.h>
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/clock.h"
#include "base/eventually.h"
#include "base/rfc3339.h"
#include "bench_nodes.h"
#include "local/zk_cluster.h"

namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

struct Config {
  std::string drover;
  int nodes = 2;
  int tasks = 1000;
  int lead_ms = 2000;
  int spread_ms = 3000;
};

int run(const Config& c) {
  auto zk = drover::local::ZkCluster::standalone();
  auto fleet = drover::bench::startBenchNodes(c.drover, zk->connectString(), "/delay-bench",
                                              "delay", c.nodes, 16);
  if (!fleet) return 1;
  const std::vector<int>& ports = fleet->ports;
  httplib::Client api("127.0.0.1", ports[0]);
  api.set_read_timeout(60);
  const int64_t t0 = drover::base::wallMillis() + c.lead_ms;
  std::map<std::string, int64_t> due;
  for (int b = 0; b * 100 < c.tasks; ++b) {
    Json batch = {{"tasks", Json::array()}};
    for (int i = b * 100; i < std::min(c.tasks, (b + 1) * 100); ++i) {
      const std::string id = fmt::format("d-{}", i);
      const int64_t at = t0 + static_cast<int64_t>(i) * c.spread_ms / c.tasks;
      due[id] = at;
      batch["tasks"].push_back({{"id", id},
                                {"type", "noop"},
                                {"max_attempts", 1},
                                {"run_at", drover::base::formatRfc3339(at)}});
    }
    auto r = api.Post("/v1/tasks/batch", batch.dump(), "application/json");
    if (!r || r->status != 202) {
      std::cerr << "submit failed: " << (r ? r->body : "no answer") << "\n";
      return 1;
    }
  }
  if (drover::base::wallMillis() > t0) {
    std::cerr << "submitting took longer than --lead-ms; raise it\n";
    return 1;
  }
  // Read every task back once it should have run (listing, 500 a page).
  std::vector<double> late;
  int early = 0;
  auto readBack = [&] {
    late.clear();
    early = 0;
    std::string cursor;
    for (;;) {
      auto r = api.Get("/v1/tasks?state=succeeded&limit=500" +
                       (cursor.empty() ? "" : "&cursor=" + cursor));
      if (!r || r->status != 200) return false;
      Json page = Json::parse(r->body);
      for (const auto& t : page["tasks"]) {
        auto it = due.find(t.value("id", ""));
        if (it == due.end() || !t["started_at"].is_number()) continue;
        const int64_t d = t["started_at"].get<int64_t>() - it->second;
        if (d < 0) {
          ++early;
        } else {
          late.push_back(static_cast<double>(d));
        }
      }
      if (!page["next"].is_string()) break;
      cursor = page["next"];
    }
    return late.size() + early == due.size();
  };
  if (!drover::base::eventually(readBack, std::chrono::milliseconds(c.lead_ms + c.spread_ms) + 120s,
                                250ms)) {
    std::cerr << fmt::format("only {} of {} tasks finished\n", late.size() + early, due.size());
    return 1;
  }
  std::sort(late.begin(), late.end());
  auto pct = [&](double p) {
    return late.empty() ? 0.0
                        : late[std::min(late.size() - 1, static_cast<size_t>(p * late.size()))];
  };
  std::cout << fmt::format(
      "delay accuracy: {} tasks over {} ms on {} nodes (protocol 2): started after their run_at "
      "by p50 {:.0f} ms, p99 {:.0f} ms, max {:.0f} ms; {} started early\n",
      due.size(), c.spread_ms, c.nodes, pct(0.50), pct(0.99), late.empty() ? 0.0 : late.back(),
      early);
  return early == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"Delayed-task accuracy on real ZooKeeper (protocol 2)"};
  app.add_option("--drover", c.drover, "Path to the drover binary")->required();
  app.add_option("--nodes", c.nodes)->capture_default_str();
  app.add_option("--tasks", c.tasks)->capture_default_str();
  app.add_option("--lead-ms", c.lead_ms, "From the start of the submit to the first run_at")
      ->capture_default_str();
  app.add_option("--spread-ms", c.spread_ms)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return run(c);
  } catch (const std::exception& e) {
    std::cerr << "delay_accuracy: " << e.what() << "\n";
    return 1;
  }
}

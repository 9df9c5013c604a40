// DAG dependencies through real `drover node` processes (protocol 2) on a real ZooKeeper
// (docs/WORKFLOWS.md "DAGs"): one batch of exec tasks forming a diamond and a chain runs in
// dependency order; a failing root cancels its whole subgraph without running any of it; a
// cycle and an unknown dependency are 400 and write nothing; dependents survive a leader killed
// -9 after their root ended and before it released them.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/eventually.h"
#include "base/ids.h"
#include "node_fleet.h"

namespace drover {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

class DagNodeTest : public testing::NodeFleetTest {
 protected:
  void SetUp() override {
    root_ = "/dags-" + base::randomHex(4);
    // exec runs unsandboxed so that tasks can log to a file of this test.
    spec_ = {4, {"--protocol", "2"}, {{"DROVER_EXEC_SANDBOX", "false"}}};
    dir_ = std::filesystem::temp_directory_path() / ("drover-dag-" + base::randomHex(6));
    std::filesystem::create_directories(dir_);
    log_ = (dir_ / "log").string();
  }
  void TearDown() override {
    NodeFleetTest::TearDown();  // SIGKILLs each node's process group
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // An exec task that logs "start NAME ns" and "end NAME ns", sleeping `ms` in between.
  Json task(const std::string& id, std::vector<std::string> deps, int ms = 300, int exit_code = 0) {
    const std::string script = fmt::format(
        "echo start {0} $(date +%s%N) >> {1}; sleep {2}; echo end {0} $(date +%s%N) >> {1}; "
        "exit {3}",
        id, log_, ms / 1000.0, exit_code);
    Json t = {{"id", id},
              {"type", "exec"},
              {"max_attempts", 1},
              {"payload", {{"argv", {"/bin/sh", "-c", script}}}}};
    if (!deps.empty()) t["depends_on"] = deps;
    return t;
  }

  // (name -> (start ns, end ns)) from the log; a task that ran twice keeps its last run.
  std::map<std::string, std::pair<int64_t, int64_t>> runs() {
    std::map<std::string, std::pair<int64_t, int64_t>> out;
    std::ifstream in(log_);
    std::string what, name;
    int64_t ns = 0;
    while (in >> what >> name >> ns) (what == "start" ? out[name].first : out[name].second) = ns;
    return out;
  }

  Json finished(const std::string& id, std::chrono::seconds deadline = 60s) {
    Json t;
    base::eventually(
        [&] {
          t = call("GET", "/v1/tasks/" + id + "?wait=10");
          std::string s = t.value("state", "");
          return s == "succeeded" || s == "failed" || s == "cancelled";
        },
        deadline);
    return t;
  }

  // Every task started after each of its dependencies ended.
  void expectOrder(const std::map<std::string, std::vector<std::string>>& graph) {
    auto r = runs();
    for (const auto& [id, deps] : graph) {
      ASSERT_TRUE(r.count(id)) << id << " never ran";
      for (const auto& d : deps) {
        ASSERT_TRUE(r.count(d)) << d;
        EXPECT_GT(r[id].first, r[d].second) << id << " started before " << d << " ended";
      }
    }
  }

  std::filesystem::path dir_;
  std::string log_;
};

TEST_F(DagNodeTest, ADiamondAndAChainRunInDependencyOrder) {
  for (const char* id : {"dag-a", "dag-b"}) start(id);
  ASSERT_TRUE(base::eventually([&] { return leader().has_value(); }, 20s));
  // A diamond a -> {b, c} -> d, then a chain d -> e -> f; b names a by its place ("#0").
  const std::map<std::string, std::vector<std::string>> graph = {
      {"a", {}}, {"b", {"a"}}, {"c", {"a"}}, {"d", {"b", "c"}}, {"e", {"d"}}, {"f", {"e"}}};
  Json batch = {{"tasks", Json::array()}};
  batch["tasks"].push_back(task("a", {}, 800));
  batch["tasks"].push_back(task("b", {"#0"}));
  batch["tasks"].push_back(task("c", {"a"}, 500));
  batch["tasks"].push_back(task("d", {"b", "c"}));
  batch["tasks"].push_back(task("e", {"d"}));
  batch["tasks"].push_back(task("f", {"e"}));
  Json ok = call("POST", "/v1/tasks/batch", batch);
  ASSERT_EQ(ok["http_status"], 202) << ok.dump();
  // d waits, and says for what (a runs 0.8 s: b and c cannot have succeeded yet).
  Json d = call("GET", "/v1/tasks/d");
  EXPECT_EQ(d.value("state", ""), "waiting") << d.dump();
  EXPECT_EQ(d.value("waiting_for", Json()), Json::array({"b", "c"})) << d.dump();
  for (const auto& [id, deps] : graph) {
    Json t = finished(id);
    EXPECT_EQ(t.value("state", ""), "succeeded") << t.dump();
  }
  expectOrder(graph);
}

TEST_F(DagNodeTest, AFailingRootCancelsItsSubgraphAndNothingInItRuns) {
  for (const char* id : {"dag-a", "dag-b"}) start(id);
  ASSERT_TRUE(base::eventually([&] { return leader().has_value(); }, 20s));
  Json batch = {{"tasks", Json::array()}};
  batch["tasks"].push_back(task("root", {}, 200, 3));
  batch["tasks"].push_back(task("x", {"root"}));
  batch["tasks"].push_back(task("y", {"x"}));
  batch["tasks"].push_back(task("z", {"root", "x"}));
  batch["tasks"].push_back(task("free", {}));
  ASSERT_EQ(call("POST", "/v1/tasks/batch", batch)["http_status"], 202);
  EXPECT_EQ(finished("root").value("state", ""), "failed");
  const std::map<std::string, std::string> reason = {
      {"x", "dependency root failed"}, {"y", "dependency x was cancelled"}, {"z", "dependency"}};
  for (const auto& [id, why] : reason) {
    Json t = finished(id);
    EXPECT_EQ(t.value("state", ""), "cancelled") << t.dump();
    EXPECT_NE(t.value("error", "").find(why), std::string::npos) << t.dump();
  }
  EXPECT_EQ(finished("free").value("state", ""), "succeeded");
  auto r = runs();
  EXPECT_TRUE(r.count("root"));
  for (const char* id : {"x", "y", "z"}) EXPECT_FALSE(r.count(id)) << id << " ran";
  // A dependency that failed already is refused at submit.
  Json late = call("POST", "/v1/tasks", task("late", {"root"}));
  EXPECT_EQ(late["http_status"], 400) << late.dump();
}

TEST_F(DagNodeTest, ACycleAndAnUnknownDependencyAre400AndWriteNothing) {
  start("dag-a");
  ASSERT_TRUE(base::eventually([&] { return leader().has_value(); }, 20s));
  Json cycle = {{"tasks", {task("p", {"r"}), task("q", {"p"}), task("r", {"q"})}}};
  Json c = call("POST", "/v1/tasks/batch", cycle);
  EXPECT_EQ(c["http_status"], 400);
  EXPECT_NE(c.value("detail", "").find("p -> r -> q -> p"), std::string::npos) << c.dump();
  Json unknown = {{"tasks", {task("s", {}), task("t", {"s", "nobody"})}}};
  Json u = call("POST", "/v1/tasks/batch", unknown);
  EXPECT_EQ(u["http_status"], 400);
  EXPECT_NE(u.value("detail", "").find("nobody"), std::string::npos) << u.dump();
  EXPECT_EQ(call("POST", "/v1/tasks", task("single", {"nobody"}))["http_status"], 400);
  for (const char* id : {"p", "q", "r", "s", "t", "single"}) {
    EXPECT_EQ(call("GET", fmt::format("/v1/tasks/{}", id))["http_status"], 404) << id;
  }
  Json all = call("GET", "/v1/tasks?limit=10");
  EXPECT_TRUE(all.value("tasks", Json::array()).empty()) << all.dump();
}

TEST_F(DagNodeTest, DependentsSurviveALeaderKilledBetweenRootEndAndRelease) {
  // The first node leads and runs nothing of the DAG (it lacks the label), so that stopping
  // it stops only the leader.
  start("dag-a");
  std::optional<std::string> first;
  ASSERT_TRUE(base::eventually([&] { return (first = leader()).has_value(); }, 20s));
  ASSERT_EQ(*first, "dag-a");
  spec_.args = {"--protocol", "2", "--label", "runner"};
  start("dag-b");
  start("dag-c");
  auto labelled = [&](Json t) {
    t["labels"] = {"runner"};
    return t;
  };
  Json batch = {{"tasks",
                 {labelled(task("root", {}, 800)), labelled(task("k1", {"root"})),
                  labelled(task("k2", {"root"})), labelled(task("k3", {"k1", "k2"}))}}};
  ASSERT_EQ(call("POST", "/v1/tasks/batch", batch)["http_status"], 202);
  ASSERT_TRUE(base::eventually([&] { return runs().count("root") > 0; }, 30s));
  // Freeze the leader while root runs; root ends and commits (a worker's write); then kill -9.
  auto leader_process = std::move(nodes_.at("dag-a"));
  nodes_.erase("dag-a");  // call() asks only the others
  ASSERT_TRUE(leader_process->pause());
  Json root = finished("root");
  ASSERT_EQ(root.value("state", ""), "succeeded") << root.dump();
  EXPECT_EQ(call("GET", "/v1/tasks/k1").value("state", ""), "pending");  // met, not released
  ASSERT_TRUE(leader_process->kill9());
  auto status = leader_process->wait(10s);
  ASSERT_TRUE(status && status->signaled()) << "the leader was not killed";
  for (const char* id : {"k1", "k2", "k3"}) EXPECT_FALSE(runs().count(id)) << id;
  ASSERT_TRUE(base::eventually(
      [&] {
        auto now = leader();
        return now && *now != "dag-a";
      },
      30s));
  for (const char* id : {"k1", "k2", "k3"}) {
    Json t = finished(id);
    EXPECT_EQ(t.value("state", ""), "succeeded") << t.dump();
  }
  expectOrder({{"k1", {"root"}}, {"k2", {"root"}}, {"k3", {"k1", "k2"}}});
}

}  // namespace
}  // namespace drover

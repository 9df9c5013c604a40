// Retry and history through real `drover node` processes on protocol 2 and a real ZooKeeper
// (docs/WORKFLOWS.md "Retry and dead letters"): a failed task retried runs again under its id
// with its history kept; a task that fails twice then succeeds shows three attempt ends; a
// worker killed -9 mid-task shows the lost attempt; the task's own retry policy spaces attempts.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "base/eventually.h"
#include "base/ids.h"
#include "local/ports.h"
#include "local/process.h"
#include "local/zk_cluster.h"
#include "node_fleet.h"

namespace drover {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

class RetryNodeTest : public testing::NodeFleetTest {
 protected:
  void SetUp() override {
    root_ = "/retry-" + base::randomHex(4);
    // exec runs unsandboxed so that a task can count its attempts in a file of this test.
    spec_ = {4, {"--protocol", "2"}, {{"DROVER_EXEC_SANDBOX", "false"}}};
    dir_ = std::filesystem::temp_directory_path() / ("drover-retry-" + base::randomHex(6));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    NodeFleetTest::TearDown();  // SIGKILLs each node's process group
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // The task once terminal (long polls until `deadline`).
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

  // The history as (attempt, state) pairs.
  static std::vector<std::pair<int, std::string>> ends(const Json& task) {
    std::vector<std::pair<int, std::string>> out;
    for (const auto& a : task.value("history", Json::array())) {
      out.emplace_back(a.value("attempt", 0), a.value("state", ""));
    }
    return out;
  }

  std::filesystem::path dir_;
};

using Ends = std::vector<std::pair<int, std::string>>;

TEST_F(RetryNodeTest, RetryOfAFailedTaskRunsItAgainUnderItsIdWithItsHistory) {
  start("rt-a");
  // Fails on its first run, succeeds on any later one (the marker file says it ran before).
  const std::string marker = (dir_ / "ran-once").string();
  const std::string script =
      fmt::format("if [ -e {0} ]; then echo again; else touch {0}; exit 3; fi", marker);
  Json sub = call("POST", "/v1/tasks",
                  {{"id", "dead-1"},
                   {"type", "exec"},
                   {"max_attempts", 1},
                   {"payload", {{"argv", {"/bin/sh", "-c", script}}}}});
  ASSERT_EQ(sub["http_status"], 202) << sub.dump();
  Json failed = finished("dead-1");
  ASSERT_EQ(failed.value("state", ""), "failed") << failed.dump();
  EXPECT_EQ(ends(failed), (Ends{{1, "failed"}}));
  // A dead letter: listed with state=failed, newest first.
  Json dead = call("GET", "/v1/tasks?state=failed&order=newest");
  ASSERT_EQ(dead["http_status"], 200) << dead.dump();
  ASSERT_FALSE(dead["tasks"].empty());
  EXPECT_EQ(dead["tasks"][0]["id"], "dead-1");

  Json retried = call("POST", "/v1/tasks/dead-1/retry");
  ASSERT_EQ(retried["http_status"], 202) << retried.dump();
  EXPECT_EQ(retried["id"], "dead-1");
  EXPECT_EQ(retried["state"], "pending");
  Json done = finished("dead-1");
  ASSERT_EQ(done.value("state", ""), "succeeded") << done.dump();
  EXPECT_EQ(done["attempts"], 2);
  EXPECT_EQ(ends(done), (Ends{{1, "failed"}, {1, "pending"}, {2, "succeeded"}}));
  EXPECT_EQ(done["history"][1]["error"], "re-opened by a retry");
  // No longer a dead letter; a succeeded task cannot be retried (409 names its state).
  dead = call("GET", "/v1/tasks?state=failed&order=newest");
  for (const auto& t : dead["tasks"]) EXPECT_NE(t["id"], "dead-1");
  Json again = call("POST", "/v1/tasks/dead-1/retry");
  EXPECT_EQ(again["http_status"], 409) << again.dump();
  EXPECT_NE(again.value("detail", "").find("succeeded"), std::string::npos) << again.dump();
  EXPECT_EQ(call("POST", "/v1/tasks/nope/retry")["http_status"], 404);
  // A bad retry policy is a 400 that names the field.
  Json bad = call("POST", "/v1/tasks",
                  {{"type", "noop"}, {"retry", {{"backoff_base_s", 5}, {"backoff_cap_s", 1}}}});
  EXPECT_EQ(bad["http_status"], 400) << bad.dump();
  EXPECT_NE(bad.value("detail", "").find("retry.backoff_cap_s"), std::string::npos);
}

TEST_F(RetryNodeTest, FailsTwiceThenSucceedsWithItsOwnBackoffShowsThreeAttempts) {
  start("rt-b");
  // Counts its runs in a file: exits 1 on the first two, succeeds on the third.
  const std::string counter = (dir_ / "count").string();
  const std::string script = fmt::format(
      "n=$(cat {0} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {0}; [ $n -ge 3 ]", counter);
  Json sub = call("POST", "/v1/tasks",
                  {{"id", "flaky-1"},
                   {"type", "exec"},
                   {"max_attempts", 3},
                   {"retry", {{"backoff_base_s", 1}, {"backoff_cap_s", 1.5}, {"jitter", 0}}},
                   {"payload", {{"argv", {"/bin/sh", "-c", script}}}}});
  ASSERT_EQ(sub["http_status"], 202) << sub.dump();
  Json done = finished("flaky-1");
  ASSERT_EQ(done.value("state", ""), "succeeded") << done.dump();
  EXPECT_EQ(done["attempts"], 3);
  EXPECT_EQ(ends(done), (Ends{{1, "pending"}, {2, "pending"}, {3, "succeeded"}}));
  EXPECT_EQ(done["retry"]["backoff_base_s"], 1);
  // The task's own policy spaced the attempts: ≥ 1 s, then ≥ 1.5 s (the cap) after each end.
  const auto& h = done["history"];
  EXPECT_GE(h[1]["started_at"].get<int64_t>() - h[0]["finished_at"].get<int64_t>(), 1000);
  EXPECT_GE(h[2]["started_at"].get<int64_t>() - h[1]["finished_at"].get<int64_t>(), 1500);
}

TEST_F(RetryNodeTest, AWorkerKilledMidTaskShowsTheLostAttempt) {
  start("rt-c");
  start("rt-d");
  Json sub =
      call("POST", "/v1/tasks", {{"id", "lost-1"}, {"type", "sleep"}, {"payload", {{"ms", 4000}}}});
  ASSERT_EQ(sub["http_status"], 202) << sub.dump();
  std::string victim;
  ASSERT_TRUE(base::eventually(
      [&] {
        Json t = call("GET", "/v1/tasks/lost-1");
        if (t.value("state", "") != "running") return false;
        victim = t.value("worker", "");
        return nodes_.count(victim) != 0;
      },
      30s));
  ASSERT_TRUE(nodes_.at(victim)->kill9());
  ASSERT_TRUE(nodes_.at(victim)->wait(10s));
  nodes_.erase(victim);
  Json done = finished("lost-1", 90s);
  ASSERT_EQ(done.value("state", ""), "succeeded") << done.dump();
  EXPECT_EQ(done["attempts"], 2);
  ASSERT_EQ(ends(done), (Ends{{1, "pending"}, {2, "succeeded"}})) << done.dump();
  EXPECT_EQ(done["history"][0]["worker"], victim);
  EXPECT_EQ(done["history"][0]["error"], fmt::format("worker {} was lost", victim));
  EXPECT_NE(done["history"][1]["worker"], victim);
}

}  // namespace
}  // namespace drover

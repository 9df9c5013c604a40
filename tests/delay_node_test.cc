// Delayed tasks through real `drover node` processes (protocol 2) on a real ZooKeeper
// (docs/WORKFLOWS.md "Delayed tasks"): tasks due a few seconds after submit, with the leader
// killed -9 in between, all run, and none starts before its run_at.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/eventually.h"
#include "base/ids.h"
#include "base/rfc3339.h"
#include "local/ports.h"
#include "local/process.h"
#include "local/zk_cluster.h"
#include "node_fleet.h"

namespace drover {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

class DelayNodeTest : public testing::NodeFleetTest {
 protected:
  void SetUp() override {
    root_ = "/delays-" + base::randomHex(4);
    spec_.args = {"--protocol", "2"};
  }
};

TEST_F(DelayNodeTest, NoDelayedTaskStartsEarlyAcrossALeaderKill) {
  for (const char* id : {"delay-a", "delay-b", "delay-c"}) start(id);
  std::optional<std::string> first;
  ASSERT_TRUE(base::eventually([&] { return (first = leader()).has_value(); }, 20s));

  // 30 tasks due 7 to 10 s from now, in one batch (per-task times) and a few single submits.
  const int64_t submitted = base::wallMillis();
  Json batch = {{"tasks", Json::array()}};
  for (int i = 0; i < 24; ++i) {
    batch["tasks"].push_back({{"id", fmt::format("late-{}", i)},
                              {"type", "noop"},
                              {"max_attempts", 1},
                              {"run_at", base::formatRfc3339(submitted + 7000 + i * 125)}});
  }
  ASSERT_EQ(call("POST", "/v1/tasks/batch", batch)["http_status"], 202);
  for (int i = 24; i < 30; ++i) {
    Json one = call("POST", "/v1/tasks",
                    {{"id", fmt::format("late-{}", i)},
                     {"type", "noop"},
                     {"max_attempts", 1},
                     {"delay_s", 7.0 + i * 0.125 - (base::wallMillis() - submitted) / 1000.0}});
    ASSERT_EQ(one["http_status"], 202) << one.dump();
    EXPECT_EQ(one["state"], "waiting");
  }
  EXPECT_EQ(call("GET", "/v1/tasks/late-0")["state"], "waiting");

  // The leader dies -9 while every task still waits; another takes over.
  ASSERT_TRUE(nodes_.at(*first)->kill9());
  ASSERT_TRUE(nodes_.at(*first)->wait(10s));
  const int64_t killed_at = base::wallMillis();
  nodes_.erase(*first);
  ASSERT_TRUE(base::eventually(
      [&] {
        auto now = leader();
        return now && *now != *first;
      },
      30s));
  ASSERT_LT(killed_at, submitted + 7000) << "the kill came after the first task was due";

  std::vector<int64_t> late_ms;
  for (int i = 0; i < 30; ++i) {
    const std::string id = fmt::format("late-{}", i);
    Json t;
    ASSERT_TRUE(base::eventually(
        [&] {
          t = call("GET", "/v1/tasks/" + id);
          return t.value("state", "") == "succeeded";
        },
        60s))
        << t.dump();
    auto run_at = base::parseRfc3339(t.value("run_at", ""));
    ASSERT_TRUE(run_at) << t.dump();
    ASSERT_TRUE(t["started_at"].is_number()) << t.dump();
    const int64_t started = t["started_at"];
    EXPECT_GE(started, *run_at) << id << " started before its time";
    EXPECT_GT(*run_at, killed_at) << id;
    late_ms.push_back(started - *run_at);
  }
  std::sort(late_ms.begin(), late_ms.end());
  std::cout << fmt::format(
      "[ figure ] delayed tasks across a leader kill: started {} ms (p50), "
      "{} ms (max) after their time\n",
      late_ms[late_ms.size() / 2], late_ms.back());
}

}  // namespace
}  // namespace drover

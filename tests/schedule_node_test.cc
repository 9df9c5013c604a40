// Cron schedules through real `drover node` processes on a real ZooKeeper (docs/WORKFLOWS.md
// "Schedules"): a schedule firing every second for 20 s while the leader is killed -9 twice
// fires every slot in the range exactly once (catchup: all) and none twice; bad input is a 400
// that writes nothing.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

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

class ScheduleNodeTest : public testing::NodeFleetTest {
 protected:
  void SetUp() override { root_ = "/schedules-" + base::randomHex(4); }

  // Kills the leader with SIGKILL; waits until another node leads.
  void killLeader() {
    std::optional<std::string> l;
    ASSERT_TRUE(base::eventually([&] { return (l = leader()).has_value(); }, 20s));
    ASSERT_TRUE(nodes_.at(*l)->kill9());
    ASSERT_TRUE(nodes_.at(*l)->wait(10s));
    nodes_.erase(*l);
    ASSERT_TRUE(base::eventually(
        [&] {
          auto now = leader();
          return now && *now != *l;
        },
        30s));
  }
};

TEST_F(ScheduleNodeTest, EverySlotFiresOnceAcrossTwoLeaderKills) {
  for (const char* id : {"sched-a", "sched-b", "sched-c"}) start(id);
  ASSERT_TRUE(base::eventually([&] { return leader().has_value(); }, 20s));

  Json created = call("POST", "/v1/schedules",
                      {{"id", "beat"},
                       {"every_s", 1},
                       {"catchup", "all"},
                       {"task", {{"type", "noop"}, {"max_attempts", 1}}}});
  ASSERT_EQ(created["http_status"], 201) << created.dump();
  const int64_t first = created["next_firing"]["slot"];
  const int64_t until = first + 20;

  // Twice: let it fire a while, then kill the leader in the middle of firing.
  for (int kill = 0; kill < 2; ++kill) {
    ASSERT_TRUE(base::eventually(
        [&] {
          Json s = call("GET", "/v1/schedules/beat");
          return s["last_firing"].is_object() && s["last_firing"]["slot"] >= first + 4 + 7 * kill;
        },
        30s));
    killLeader();
  }
  // The last leader catches up the slots fired by no one, then keeps time.
  Json s;
  ASSERT_TRUE(base::eventually(
      [&] {
        s = call("GET", "/v1/schedules/beat");
        return s["last_firing"].is_object() && s["last_firing"]["slot"] >= until;
      },
      60s))
      << s.dump();
  ASSERT_EQ(call("DELETE", "/v1/schedules/beat")["http_status"], 204);
  s = call("GET", "/v1/schedules");
  EXPECT_EQ(s["schedules"], Json::array());

  // Every slot from the first to `until` has its task; nothing else carries the schedule's name.
  for (int64_t slot = first; slot <= until; ++slot) {
    Json t = call("GET", fmt::format("/v1/tasks/beat-{}", slot));
    EXPECT_EQ(t["http_status"], 200) << "slot " << slot << " did not fire";
  }
  std::map<std::string, int> seen;
  std::string cursor;
  for (int page = 0; page < 100; ++page) {
    Json l = call("GET", "/v1/tasks?limit=500" + (cursor.empty() ? "" : "&cursor=" + cursor));
    ASSERT_EQ(l["http_status"], 200) << l.dump();
    for (const auto& t : l["tasks"]) {
      std::string id = t["id"];
      if (id.rfind("beat-", 0) == 0) seen[id]++;
    }
    if (!l["next"].is_string()) break;
    cursor = l["next"];
  }
  for (const auto& [id, n] : seen) {
    EXPECT_EQ(n, 1) << id << " listed twice";
    int64_t slot = std::stoll(id.substr(5));
    EXPECT_GE(slot, first) << id << " fired before the schedule existed";
  }
  EXPECT_GE(seen.size(), static_cast<size_t>(until - first + 1));
}

TEST_F(ScheduleNodeTest, BadInputIsA400AndWritesNothing) {
  start("sched-x");
  const Json task = {{"type", "noop"}};
  for (const Json& body :
       {Json{{"id", "bad"}, {"cron", "61 * * * *"}, {"task", task}},
        Json{{"id", "bad"}, {"every_s", 5}, {"timezone", "Mars/Base"}, {"task", task}},
        Json{{"id", "bad"}, {"every_s", 5}, {"task", {{"type", "no such"}}}},
        Json{{"id", "bad"}, {"every_s", 5}}}) {
    Json r = call("POST", "/v1/schedules", body);
    EXPECT_EQ(r["http_status"], 400) << body.dump() << " -> " << r.dump();
    EXPECT_TRUE(r.contains("detail")) << r.dump();
  }
  EXPECT_EQ(call("GET", "/v1/schedules/bad")["http_status"], 404);
  EXPECT_EQ(call("GET", "/v1/schedules")["schedules"], Json::array());
  // Idempotent create, and a conflict for another body under the same id.
  Json body = {
      {"id", "daily"}, {"cron", "0 3 * * *"}, {"timezone", "Europe/Berlin"}, {"task", task}};
  EXPECT_EQ(call("POST", "/v1/schedules", body)["http_status"], 201);
  EXPECT_EQ(call("POST", "/v1/schedules", body)["http_status"], 200);
  body["cron"] = "0 4 * * *";
  EXPECT_EQ(call("POST", "/v1/schedules", body)["http_status"], 409);
  Json got = call("GET", "/v1/schedules/daily");
  EXPECT_EQ(got["cron"], "0 3 * * *");
  EXPECT_TRUE(got["next_firing"]["at"].is_string());
  EXPECT_TRUE(got["last_firing"].is_null());
  EXPECT_EQ(call("DELETE", "/v1/schedules/daily")["http_status"], 204);
  EXPECT_EQ(call("DELETE", "/v1/schedules/daily")["http_status"], 404);
}

}  // namespace
}  // namespace drover

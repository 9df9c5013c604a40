// The HTTP layer's reads: task lists (both orders, the filters, the cursors), workers, cluster,
// metrics.
#include <set>

#include "api/http_test_helpers.h"
#include "base/ids.h"

namespace drover::api::testing {
namespace {

TEST_F(HttpTest, ListPagesOldestFirstAndFiltersByState) {
  for (auto id : {"e", "a", "c", "b", "d"}) {
    ASSERT_EQ(postJson("/v1/tasks", Json{{"id", id}, {"type", "noop"}}.dump())->status, 202);
  }
  ASSERT_EQ(client().Delete("/v1/tasks/c")->status, 202);
  auto ids = [](const httplib::Result& r) {
    std::vector<std::string> out;
    Json body = Json::parse(r->body);
    for (const auto& t : body["tasks"]) out.push_back(t["id"]);
    return out;
  };
  // Pages of 2 in batch order (by submit time; two submits of one millisecond in either order),
  // each `next` the cursor of the following page: together the whole listing, once each.
  std::vector<std::string> paged;
  std::string cursor;
  int pages = 0;
  for (; pages < 10; ++pages) {
    auto r = client().Get("/v1/tasks?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    auto page = ids(r);
    EXPECT_LE(page.size(), 2u);
    paged.insert(paged.end(), page.begin(), page.end());
    Json next = bodyOf(r)["next"];
    if (next.is_null()) break;
    cursor = next.get<std::string>();
  }
  auto all = client().Get("/v1/tasks");
  EXPECT_EQ(ids(all), paged);
  auto sorted = paged;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  EXPECT_TRUE(bodyOf(all)["next"].is_null());
  auto cancelled = client().Get("/v1/tasks?state=cancelled");
  EXPECT_EQ(ids(cancelled), (std::vector<std::string>{"c"}));
  // The state filter applies before the limit: the pending ones in the same order, without c.
  std::vector<std::string> want_pending;
  for (const auto& id : paged) {
    if (id != "c") want_pending.push_back(id);
  }
  auto pending = client().Get("/v1/tasks?state=pending&limit=3");
  EXPECT_EQ(ids(pending),
            (std::vector<std::string>(want_pending.begin(), want_pending.begin() + 3)));
  ASSERT_TRUE(bodyOf(pending)["next"].is_string());
  auto rest = client().Get("/v1/tasks?state=pending&limit=3&cursor=" +
                           bodyOf(pending)["next"].get<std::string>());
  EXPECT_EQ(ids(rest), std::vector<std::string>{want_pending.back()});
}

TEST_F(HttpTest, ListsNewestFirstWithACursor) {
  // Submitted in this order: ids that sort otherwise, and a batch (one transaction, one zxid).
  for (auto id : {"m", "z", "a"}) {
    ASSERT_EQ(postJson("/v1/tasks", Json{{"id", id}, {"type", "noop"}}.dump())->status, 202);
  }
  Json batch = {{"tasks", {{{"id", "b1"}, {"type", "noop"}}, {{"id", "b2"}, {"type", "noop"}}}}};
  ASSERT_EQ(postJson("/v1/tasks/batch", batch.dump())->status, 202);
  ASSERT_EQ(postJson("/v1/tasks", Json{{"id", "c"}, {"type", "noop"}}.dump())->status, 202);
  auto ids = [](const httplib::Result& r) {
    std::vector<std::string> out;
    Json body = Json::parse(r->body);
    for (const auto& t : body["tasks"]) out.push_back(t["id"]);
    return out;
  };
  auto all = client().Get("/v1/tasks?order=newest");
  ASSERT_TRUE(all);
  ASSERT_EQ(all->status, 200);
  // Newest first is the oldest-first listing reversed (batches sort by submit time; two submits of
  // one millisecond may sort either way, so the exact order is read, not assumed), the tasks of
  // one batch by index.
  auto oldest = ids(client().Get("/v1/tasks"));
  ASSERT_EQ(oldest.size(), 6u);
  EXPECT_EQ(ids(all), std::vector<std::string>(oldest.rbegin(), oldest.rend()));
  auto b1 = std::find(oldest.begin(), oldest.end(), "b1");
  ASSERT_NE(b1, oldest.end());
  ASSERT_NE(b1 + 1, oldest.end());
  EXPECT_EQ(*(b1 + 1), "b2");
  std::vector<std::string> paged;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    auto r = client().Get("/v1/tasks?order=newest&limit=2" +
                          (cursor.empty() ? "" : "&cursor=" + cursor));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    for (auto& id : ids(r)) paged.push_back(id);
    Json next = bodyOf(r)["next"];
    if (next.is_null()) break;
    cursor = next.get<std::string>();
  }
  EXPECT_EQ(paged, ids(all));
  // The state filter applies before the limit, as in id order.
  ASSERT_EQ(client().Delete("/v1/tasks/b2")->status, 202);
  auto cancelled = client().Get("/v1/tasks?order=newest&state=cancelled&limit=1");
  EXPECT_EQ(ids(cancelled), (std::vector<std::string>{"b2"}));
  for (auto bad : {"order=oldest", "order=newest&cursor=c", "order=newest&cursor=x-c",
                   "order=newest&cursor=-1-c", "order=newest&cursor=12-.."}) {
    auto b = client().Get(std::string("/v1/tasks?") + bad);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->status, 400) << bad;
  }
}

TEST_F(HttpTest, ListFiltersByTypeInBothOrders) {
  for (auto [id, type] : {std::pair{"a", "noop"}, {"b", "echo"}, {"c", "noop"}, {"d", "echo"}}) {
    ASSERT_EQ(postJson("/v1/tasks", Json{{"id", id}, {"type", type}}.dump())->status, 202);
  }
  auto list = [&](const std::string& query) {
    auto r = client().Get("/v1/tasks?" + query);
    EXPECT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
    std::vector<std::string> out;
    Json body = Json::parse(r->body);
    for (const auto& t : body["tasks"]) out.push_back(t["id"]);
    return std::pair{out, body["next"]};
  };
  // Submits of one millisecond may sort either way: the order is read from the oldest-first list.
  const auto echo = list("type=echo").first;
  EXPECT_EQ(std::set<std::string>(echo.begin(), echo.end()), (std::set<std::string>{"b", "d"}));
  ASSERT_EQ(echo.size(), 2u);
  const auto noop = list("type=noop").first;
  EXPECT_EQ(std::set<std::string>(noop.begin(), noop.end()), (std::set<std::string>{"a", "c"}));
  EXPECT_EQ(list("type=noop&order=newest").first,
            std::vector<std::string>(noop.rbegin(), noop.rend()));
  // The filter applies before the limit: the page is full of echo tasks, the cursor goes on.
  auto [first, next] = list("type=echo&order=newest&limit=1");
  EXPECT_EQ(first, std::vector<std::string>{echo[1]});
  ASSERT_TRUE(next.is_string());
  EXPECT_EQ(list("type=echo&order=newest&limit=1&cursor=" + next.get<std::string>()).first,
            std::vector<std::string>{echo[0]});
  ASSERT_EQ(client().Delete("/v1/tasks/d")->status, 202);
  EXPECT_EQ(list("type=echo&state=cancelled").first, (std::vector<std::string>{"d"}));
  EXPECT_TRUE(list("type=sleep").first.empty());  // a valid name nobody submitted
  auto bad = client().Get("/v1/tasks?type=no%20spaces");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("type:"), std::string::npos) << bad->body;
}

TEST_F(HttpTest, ListFiltersByQueue) {
  for (auto [id, queue] : {std::pair{"a", "etl"}, {"b", "default"}, {"c", "etl"}}) {
    ASSERT_EQ(
        postJson("/v1/tasks", Json{{"id", id}, {"type", "noop"}, {"queue", queue}}.dump())->status,
        202);
  }
  auto ids = [&](const std::string& query) {
    auto r = client().Get("/v1/tasks?" + query);
    EXPECT_TRUE(r);
    std::vector<std::string> out;
    const Json body = Json::parse(r->body);
    for (const auto& t : body["tasks"]) out.push_back(t["id"]);
    return out;
  };
  const auto etl = ids("queue=etl");
  EXPECT_EQ(std::set<std::string>(etl.begin(), etl.end()), (std::set<std::string>{"a", "c"}));
  EXPECT_EQ(ids("queue=etl&type=noop&order=newest"),
            std::vector<std::string>(etl.rbegin(), etl.rend()));
  EXPECT_EQ(ids("queue=default"), std::vector<std::string>{"b"});
  EXPECT_TRUE(ids("queue=ml").empty());
  auto bad = client().Get("/v1/tasks?queue=a%2Fb");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("queue:"), std::string::npos) << bad->body;
}

TEST_F(HttpTest, WorkersAndCluster) {
  tasks::WorkerInfo w{"node-1", "host", 42, 4, {"gpu"}, "127.0.0.1:8081", 1, 0, {"default"}, {}};
  ASSERT_TRUE(other_
                  ->create({layout_.worker("node-1"),
                            tasks::toJson(w).dump(),
                            coord::CreateMode::kEphemeral,
                            {}})
                  .get());
  tasks::WorkerInfo w2{"node-2", "host", 43, 1, {}, "", 1, 4};  // 1 slot, prefetch 4
  ASSERT_TRUE(other_
                  ->create({layout_.worker("node-2"),
                            tasks::toJson(w2).dump(),
                            coord::CreateMode::kEphemeral,
                            {}})
                  .get());
  ASSERT_TRUE(other_
                  ->create({layout_.leader(),
                            R"({"id":"node-1","epoch":7,"http":""})",
                            coord::CreateMode::kEphemeral,
                            {}})
                  .get());
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"r1","type":"noop"})")->status, 202);
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"r2","type":"noop"})")->status, 202);
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"r3","type":"noop"})")->status, 202);
  assign("r1", "node-2", State::kRunning);
  assign("r3", "node-2", State::kAssigned);  // prefetched: waits on node-2 for its one slot

  auto r = client().Get("/v1/workers");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto j = bodyOf(r);
  ASSERT_EQ(j["workers"].size(), 2u);
  EXPECT_EQ(j["workers"][0]["id"], "node-1");
  EXPECT_EQ(j["workers"][0]["slots"], 4);
  EXPECT_EQ(j["workers"][0]["labels"], (Json{"gpu"}));
  EXPECT_EQ(j["workers"][0]["leader"], true);
  EXPECT_EQ(j["workers"][0]["running"], 0);
  EXPECT_EQ(j["workers"][0]["assigned"], 0);
  EXPECT_EQ(j["workers"][1]["running"], 1);  // its slots: min(assigned, slots)
  EXPECT_EQ(j["workers"][1]["assigned"], 2);
  EXPECT_EQ(j["workers"][1]["prefetch"], 4);
  EXPECT_EQ(j["workers"][1]["leader"], false);
  EXPECT_EQ(j["leader"], "node-1");

  auto c = client().Get("/v1/cluster");
  ASSERT_TRUE(c);
  ASSERT_EQ(c->status, 200) << c->body;
  auto cj = bodyOf(c);
  EXPECT_EQ(cj["leader"], "node-1");
  EXPECT_EQ(cj["epoch"], 7);
  EXPECT_EQ(cj["workers"], 2);
  EXPECT_EQ(cj["zookeeper"]["connected"], true);
  EXPECT_EQ(cj["tasks"]["pending"], 1);
  EXPECT_EQ(cj["tasks"]["assigned"], 1);
  EXPECT_EQ(cj["tasks"]["running"], 1);
  EXPECT_EQ(cj["tasks"]["succeeded"], 0);
  EXPECT_EQ(cj["tasks"]["cancelled"], 0);
}

// /v1/workers names the leader /v1/cluster names, even when no listed worker has its id (a
// leader without the worker role, or one whose worker is registering again after its session
// expired).
TEST_F(HttpTest, WorkersNameTheLeaderClusterNamesEvenWhenNoWorkerHasItsId) {
  ASSERT_TRUE(other_
                  ->create({layout_.leader(),
                            R"({"id":"api-only","epoch":3,"http":""})",
                            coord::CreateMode::kEphemeral,
                            {}})
                  .get());
  auto r = client().Get("/v1/workers");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(bodyOf(r)["leader"], "api-only");
  auto c = client().Get("/v1/cluster");
  ASSERT_TRUE(c);
  ASSERT_EQ(c->status, 200) << c->body;
  EXPECT_EQ(bodyOf(c)["leader"], "api-only");
}

TEST_F(HttpTest, ClusterWithoutLeader) {
  auto c = client().Get("/v1/cluster");
  ASSERT_TRUE(c);
  ASSERT_EQ(c->status, 200);
  EXPECT_TRUE(bodyOf(c)["leader"].is_null());
  EXPECT_TRUE(bodyOf(c)["epoch"].is_null());
}

TEST_F(HttpTest, DefaultMetrics) {
  auto r = client().Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("drover_up 1"), std::string::npos);
}

// Reads an SSE stream on a thread of its own until `done` says stop.

}  // namespace
}  // namespace drover::api::testing

#include "api/stats_history.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "api/test_fixture.h"
#include "base/metrics.h"

namespace drover::api {
namespace {

using tasks::Json;

TEST(StatsRing, FirstRecordIsTheBaselineThenIncreasesLandInTheirBucket) {
  StatsRing ring(6, 10000);             // one minute
  ring.record(100'000, {5, 50, 2, 1});  // baseline: counters a node had before it sampled
  ring.record(101'000, {6, 52, 2, 1});
  ring.record(109'999, {8, 53, 3, 1});
  ring.record(110'000, {8, 53, 3, 4});
  auto w = ring.window(115'000);
  ASSERT_EQ(w.size(), 6u);
  EXPECT_EQ(w.front().at, 60'000);
  EXPECT_EQ(w.back().at, 110'000);
  EXPECT_EQ(w[4].at, 100'000);
  EXPECT_EQ(w[4].counts, (StatsCounts{3, 3, 1, 0}));
  EXPECT_EQ(w[5].counts, (StatsCounts{0, 0, 0, 3}));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(w[i].counts, StatsCounts{}) << i;
}

TEST(StatsRing, OldBucketsFallOutAndAResetIsANewBaseline) {
  StatsRing ring(3, 1000);
  ring.record(0, {});
  ring.record(500, {1, 1, 0, 0});
  ring.record(5'500, {2, 2, 0, 0});  // the slot of t=0 is reused (5 % 3 != 0, but 3 % 3 == 0)
  ring.record(6'500, {1, 0, 0, 0});  // went down: a new baseline, nothing counted
  ring.record(7'200, {3, 0, 0, 0});
  auto w = ring.window(7'900);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].at, 5'000);
  EXPECT_EQ(w[0].counts, (StatsCounts{1, 1, 0, 0}));
  EXPECT_EQ(w[1].counts, StatsCounts{});
  EXPECT_EQ(w[2].counts, (StatsCounts{2, 0, 0, 0}));
  // A window far past everything recorded is all zeros, not stale buckets of the same slots.
  for (const auto& b : ring.window(9'000'000)) EXPECT_EQ(b.counts, StatsCounts{});
}

TEST(StatsRing, SamplerReadsTheCountersANodeKeeps) {
  base::Registry r;
  r.counter("drover_tasks_submitted_total", "S", {{"result", "created"}}).inc(4);
  r.counter("drover_tasks_submitted_total", "S", {{"result", "rejected"}}).inc(9);
  r.counter("drover_tasks_completed_total", "C", {{"outcome", "failed"}}).inc(2);
  EXPECT_EQ(StatsSampler::read(r), (StatsCounts{4, 0, 2, 0}));
}

TEST(StatsHistory, AddsPeersByBucketAndRefusesOtherShapes) {
  StatsRing a(2, 1000), b(2, 1000);
  a.record(0, {});
  a.record(1'100, {1, 1, 0, 0});
  b.record(0, {});
  b.record(1'200, {2, 0, 1, 0});
  Json sum = historyJson(a.window(1'500), 1000, 1'500);
  ASSERT_TRUE(addHistory(sum, historyJson(b.window(1'500), 1000, 1'500)));
  EXPECT_EQ(sum["buckets"][1]["at"], 1000);
  EXPECT_EQ(sum["buckets"][1]["submitted"], 3);
  EXPECT_EQ(sum["buckets"][1]["failed"], 1);
  Json before = sum;
  EXPECT_FALSE(addHistory(sum, Json{{"buckets", {{{"at", 1000}, {"submitted", "x"}}}}}));
  EXPECT_FALSE(addHistory(sum, Json::array()));
  EXPECT_EQ(sum, before);
}

// The route over HTTP: this node's counts, and a peer that does not answer is named as such.
class StatsHttpTest : public testing::ApiFixture {
 protected:
  void configure(HttpOptions& o) override { o.stats = &ring_; }
  StatsRing ring_{360, 10000};
};

TEST_F(StatsHttpTest, ServesTheRingAndMarksUnreachablePeers) {
  int64_t now = base::wallMillis();
  ring_.record(now, {});
  ring_.record(now, {7, 5, 1, 0});
  auto r = client().Get("/v1/stats/history?scope=node");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  Json j = Json::parse(r->body);
  EXPECT_EQ(j["step_ms"], 10000);
  ASSERT_EQ(j["buckets"].size(), 360u);
  double submitted = 0;
  for (const auto& b : j["buckets"]) submitted += b["submitted"].get<double>();
  EXPECT_EQ(submitted, 7);

  // A registered worker whose API is a closed port: the sum still answers, marked partial.
  int dead = 0;
  {
    httplib::Server s;
    dead = s.bind_to_any_port("127.0.0.1");
  }
  tasks::WorkerInfo w{"peer", "host", 1, 1, {}, fmt::format("127.0.0.1:{}", dead), 1};
  ASSERT_TRUE(
      other_
          ->create(
              {layout_.worker("peer"), tasks::toJson(w).dump(), coord::CreateMode::kEphemeral, {}})
          .get());
  auto c = client().Get("/v1/stats/history");
  ASSERT_TRUE(c);
  ASSERT_EQ(c->status, 200) << c->body;
  Json cj = Json::parse(c->body);
  EXPECT_EQ(cj["complete"], false);
  ASSERT_EQ(cj["nodes"].size(), 2u);
  EXPECT_EQ(cj["nodes"][1]["ok"], false);
  EXPECT_TRUE(cj["nodes"][1]["error"].is_string());
  auto bad = client().Get("/v1/stats/history?scope=planet");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
}

}  // namespace
}  // namespace drover::api

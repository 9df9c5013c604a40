// Protocol v2's worker (worker::ChunkAgent) on a real ZooKeeper: 1,024 tasks in chunks of 64,
// each outcome recorded exactly once.

#include <gtest/gtest.h>

#include <map>

#include "base/clock.h"
#include "base/eventually.h"
#include "base/ids.h"
#include "coord/paths.h"
#include "coord/zk/zk_coordination.h"
#include "local/zk_cluster.h"
#include "tasks/protocol.h"
#include "worker/chunk_agent.h"

namespace drover {
namespace {

using namespace std::chrono_literals;
using local::ZkCluster;

TEST(ChunkAgentZkTest, RunsAThousandTasksInChunks) {
  ZkCluster& zk = ZkCluster::sharedStandalone();
  auto admin = coord::ZkCoordination::connect({zk.connectString(), 4000ms});
  auto session = coord::ZkCoordination::connect({zk.connectString(), 4000ms});
  ASSERT_TRUE(admin && session);
  ASSERT_TRUE((*admin)->waitConnected(20s) && (*session)->waitConnected(20s));
  coord::Coordination& a = **admin;
  tasks::Layout layout("/chunk-agent-" + base::randomHex(4));
  const std::string w = "w1";
  for (const auto& dir : layout.directories()) ASSERT_TRUE(coord::ensurePath(a, dir)) << dir;
  ASSERT_TRUE(coord::ensurePath(a, layout.epoch()));
  ASSERT_TRUE(coord::ensurePath(a, layout.workers()));
  ASSERT_TRUE(coord::ensurePath(a, layout.assignmentsOf(w)));
  tasks::WorkerInfo info;
  info.id = w;
  ASSERT_TRUE(
      (*session)
          ->create(
              {layout.worker(w), tasks::toJson(info).dump(), coord::CreateMode::kEphemeral, {}})
          .get());

  worker::HandlerRegistry registry;
  worker::registerBuiltins(registry);
  worker::Runner runner(8);
  worker::ChunkAgent agent(**session, layout, w, runner, registry);
  agent.start();

  // Plays the API (16 batches of 64 echo tasks) and the leader
  // (one chunk per batch, specs inline for half of them, read from the batch record otherwise).
  constexpr int kBatches = 16;
  constexpr uint32_t kPerBatch = 64;
  std::vector<std::string> names;
  int64_t now = base::wallMillis();
  for (int b = 0; b < kBatches; ++b) {
    tasks::BatchRecord batch;
    batch.submitted_at = now;
    batch.name = tasks::makeBatchName(now, static_cast<uint32_t>(b));
    for (uint32_t i = 0; i < kPerBatch; ++i) {
      tasks::TaskSpec spec;
      spec.id = tasks::generatedId({batch.name, i});
      spec.type = "echo";
      spec.payload = tasks::Json{{"i", i}};
      batch.tasks.push_back(spec);
    }
    std::string bucket = batch.name.substr(0, tasks::Layout::kBatchBucketDigits);
    ASSERT_TRUE(coord::ensurePath(a, layout.batchBucket(bucket)));
    ASSERT_TRUE(coord::ensurePath(a, layout.pendingBucket(bucket)));
    tasks::v2::Builder submit(layout);
    submit.submit(batch);
    ASSERT_TRUE(a.multi(std::move(submit).finish().ops).get());

    std::string chunk_name = tasks::makeChunkName(0, b + 1);
    auto node = a.get(layout.pending(batch.name), nullptr).get();
    ASSERT_TRUE(node);
    auto state = *tasks::decodePending(node->data);
    tasks::Chunk chunk;
    for (uint32_t i = 0; i < kPerBatch; ++i) {
      tasks::ChunkItem item;
      item.ref = {batch.name, i};
      item.id = batch.tasks[i].id;
      if (b % 2 == 0) item.spec = batch.tasks[i];
      chunk.items.push_back(std::move(item));
      state.hold(i, tasks::Held{w, chunk_name});
    }
    auto assign = tasks::v2::Builder::fenced(layout, 0);
    assign.assign({tasks::v2::PendingWrite{batch.name, node->stat.version, state}}, w, chunk_name,
                  chunk, now);
    auto r = a.multi(std::move(assign).finish().ops).get();
    ASSERT_TRUE(r) << r.error().toString();
    names.push_back(batch.name);
  }

  const uint64_t total = kBatches * kPerBatch;
  ASSERT_TRUE(base::eventually([&] { return agent.stats().succeeded == total; }, 60s, 10ms))
      << agent.stats().succeeded;
  EXPECT_EQ(agent.stats().fenced_commits, 0u);
  for (const auto& name : names) {
    std::map<uint32_t, int> times;
    auto kids = a.children(layout.batch(name), nullptr).get();
    ASSERT_TRUE(kids);
    for (const auto& k : *kids) {
      auto rec = tasks::decodeResults(a.get(layout.batch(name) + "/" + k, nullptr).get()->data);
      ASSERT_TRUE(rec);
      for (const auto& o : rec->outcomes) {
        EXPECT_EQ(o.state, tasks::State::kSucceeded);
        EXPECT_EQ(o.result, (tasks::Json{{"i", o.index}}));
        ++times[o.index];
      }
    }
    ASSERT_EQ(times.size(), kPerBatch) << name;
    for (const auto& [i, n] : times) EXPECT_EQ(n, 1) << name << "." << i;
  }
  // Every chunk was deleted by its last commit.
  EXPECT_TRUE(base::eventually(
      [&] { return a.children(layout.assignmentsOf(w), nullptr).get()->empty(); }, 10s));
  agent.stop();
  EXPECT_FALSE(agent.dead());
}

}  // namespace
}  // namespace drover

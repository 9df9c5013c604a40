// Protocol v2's leader on a real ZooKeeper: 10,000 tasks submitted in batches go through the
// BatchScheduler to simulated workers that commit whole chunks; every task ends with exactly
// one outcome, and the sweep then leaves no pending state behind.

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/eventually.h"
#include "base/ids.h"
#include "coord/paths.h"
#include "coord/zk/zk_coordination.h"
#include "local/zk_cluster.h"
#include "scheduler/batch_scheduler.h"
#include "scheduler/batch_test_actors.h"

namespace drover {
namespace {

using namespace std::chrono_literals;
using local::ZkCluster;
namespace actors = scheduler::testing;

TEST(BatchLeaderZkTest, DrivesTenThousandTasksThroughChunks) {
  auto& zk = ZkCluster::sharedStandalone();
  auto admin = coord::ZkCoordination::connect({zk.connectString(), 10000ms});
  auto leader = coord::ZkCoordination::connect({zk.connectString(), 10000ms});
  ASSERT_TRUE(admin && leader);
  tasks::Layout layout("/v2lead-" + base::randomHex(8));
  for (const auto& dir : layout.directories()) ASSERT_TRUE(coord::ensurePath(**admin, dir));
  ASSERT_TRUE((*admin)->create({layout.epoch(), "", coord::CreateMode::kPersistent, {}}).get());
  auto stat = (*admin)->set(layout.epoch(), "leader", coord::kAnyVersion).get();
  ASSERT_TRUE(stat);

  std::vector<std::string> workers{"w1", "w2", "w3", "w4"};
  for (const auto& w : workers) {
    tasks::WorkerInfo info{w, "host", 1, 8, {}, "", 0, 120, {"default"}, {}};
    ASSERT_TRUE(coord::ensurePath(**admin, layout.assignmentsOf(w)));
    ASSERT_TRUE(
        (*admin)
            ->create(
                {layout.worker(w), tasks::toJson(info).dump(), coord::CreateMode::kEphemeral, {}})
            .get());
  }
  constexpr size_t kTasks = 10'000;
  constexpr size_t kBatch = 500;
  std::vector<std::string> batches;
  const int64_t now = base::wallMillis();
  for (size_t done = 0; done < kTasks; done += kBatch) {
    std::vector<tasks::TaskSpec> specs(kBatch);
    for (auto& s : specs) s.type = "noop";
    auto name =
        actors::submitBatch(**admin, layout, std::move(specs), now, static_cast<uint32_t>(done));
    ASSERT_FALSE(name.empty());
    batches.push_back(name);
  }

  scheduler::BatchScheduler::Options options;
  options.sweep_interval = std::chrono::hours(1);
  std::vector<std::string> fenced;
  scheduler::BatchScheduler s(**leader, layout, options, stat->version,
                              [&](std::string reason) { fenced.push_back(reason); });
  s.start();
  // The simulated workers: commit every chunk they hold, until all tasks are done.
  size_t committed = 0;
  auto deadline = std::chrono::steady_clock::now() + 120s;
  while (committed < kTasks && std::chrono::steady_clock::now() < deadline) {
    size_t before = committed;
    for (const auto& w : workers) {
      for (const auto& c : actors::chunksOf(**admin, layout, w)) {
        if (actors::commit(**admin, layout, w, c, actors::refsOf(c.chunk), base::wallMillis())) {
          committed += c.chunk.items.size();
        }
      }
    }
    if (committed == before) {
      // Nothing to commit: wait for the leader's next round to hand a worker a chunk.
      (void)base::eventually(
          [&] {
            for (const auto& w : workers) {
              if (!actors::chunksOf(**admin, layout, w).empty()) return true;
            }
            return false;
          },
          5s, 5ms);
    }
  }
  ASSERT_EQ(committed, kTasks);
  EXPECT_TRUE(fenced.empty());
  EXPECT_TRUE(base::eventually([&] { return s.snapshot().assigned_total == kTasks; }, 10s));

  // Exactly one outcome per task.
  for (const auto& b : batches) {
    auto children = (*admin)->children(layout.batch(b), nullptr).get();
    ASSERT_TRUE(children);
    std::map<uint32_t, int> seen;
    for (const auto& child : *children) {
      auto node = (*admin)->get(layout.batch(b) + "/" + child, nullptr).get();
      ASSERT_TRUE(node);
      auto record = tasks::decodeResults(node->data);
      ASSERT_TRUE(record);
      for (const auto& o : record->outcomes) ++seen[o.index];
    }
    ASSERT_EQ(seen.size(), kBatch) << b;
    for (const auto& [index, n] : seen) EXPECT_EQ(n, 1) << b << "." << index;
  }
  // Nothing pending is left once the sweep has dropped the finished pointers.
  s.sweepNow();

  EXPECT_TRUE(base::eventually(
      [&] {
        std::set<std::string> left;
        for (const auto& b : batches) {
          auto r = (*admin)->exists(layout.pending(b), nullptr).get();
          if (!r || *r) left.insert(b);
        }
        if (!left.empty()) s.sweepNow();
        return left.empty();
      },
      20s, 200ms));
  s.stop();
}

}  // namespace
}  // namespace drover

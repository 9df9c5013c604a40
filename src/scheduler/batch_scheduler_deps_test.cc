// The leader's side of dependencies on the fake tree (docs/ZNODES.md "Dependencies (issue 10):
// decisions"): dependents held out of the index, released in memory, cancelled down the graph.
#include "scheduler/batch_scheduler_fixture.h"

namespace drover::scheduler {
namespace {

// --- Dependencies (docs/ZNODES.md "Dependencies (issue 10): decisions") ---

tasks::TaskSpec dependent(std::string id, std::vector<std::string> deps) {
  tasks::TaskSpec s;
  s.id = std::move(id);
  s.type = "noop";
  s.depends_on = std::move(deps);
  return s;
}

std::set<std::string> heldIds(const std::vector<tasks::ChunkItem>& items) {
  std::set<std::string> out;
  for (const auto& i : items) out.insert(i.spec ? i.spec->id : i.id);
  return out;
}

TEST_F(BatchSchedulerTest, DependentsWaitAndAreReleasedInMemory) {
  addWorker("w1", 8, 0);
  int multis = 0;
  via_ = std::make_unique<HookedCoordination>(leader_,
                                              [&](const std::vector<coord::Op>&) { ++multis; });
  // A diamond: a -> {b, c} -> d ("#0" names a by its place).
  std::string batch = submit({dependent("a", {}), dependent("b", {"#0"}), dependent("c", {"a"}),
                              dependent("d", {"b", "c"})});
  start(via_.get());
  ASSERT_TRUE(settle([&] { return held("w1") == 1; }));
  quiesce();
  EXPECT_EQ(heldIds(items("w1")), (std::set<std::string>{"a"}));
  EXPECT_EQ(scheduler_->snapshot().pending, 0u);  // b, c, d are held out of the index
  const int before = multis;
  ASSERT_EQ(commitAll("w1"), 1u);
  ASSERT_TRUE(settle([&] { return held("w1") == 2; }));
  EXPECT_EQ(heldIds(items("w1")), (std::set<std::string>{"b", "c"}));
  // Only assign multis (one chunk each): the release itself wrote nothing.
  auto bc = chunks("w1");
  EXPECT_EQ(multis - before, static_cast<int>(bc.size()));
  // d waits for both: one done is not enough.
  const auto& first = bc[0].chunk.items[0];
  ASSERT_TRUE(actors::commit(admin_, layout_, "w1", bc[0], {first.ref}, wall()));
  quiesce();
  EXPECT_EQ(heldIds(items("w1")).count("d"), 0u);
  commitAll("w1");
  ASSERT_TRUE(settle([&] { return heldIds(items("w1")) == std::set<std::string>{"d"}; }));
  commitAll("w1");
  ASSERT_TRUE(settle([&] { return outcomesOf(batch).size() == 4; }));
  for (const auto& o : outcomesOf(batch)) EXPECT_EQ(o.state, State::kSucceeded);
  EXPECT_TRUE(fenced().empty());
}

TEST_F(BatchSchedulerTest, AFailedDependencyCancelsItsSubgraphAcrossBatches) {
  addWorker("w1", 8, 0);
  std::string first = submit({dependent("root", {}), dependent("x", {"root"}),
                              dependent("y", {"#1"}), dependent("free", {})});
  std::string second = submit({dependent("far", {"y"}), dependent("", {"far"})});
  start();
  ASSERT_TRUE(settle([&] { return held("w1") == 2; }));
  EXPECT_EQ(heldIds(items("w1")), (std::set<std::string>{"root", "free"}));
  auto c = chunks("w1");
  ASSERT_EQ(c.size(), 1u);
  std::vector<tasks::TaskRef> root;
  for (const auto& item : c[0].chunk.items) {
    if ((item.spec ? item.spec->id : item.id) == "root") root.push_back(item.ref);
  }
  ASSERT_TRUE(actors::commit(admin_, layout_, "w1", c[0], root, wall(), State::kFailed));
  auto cancelled = [&](const std::string& batch) {
    std::map<uint32_t, std::string> out;
    for (const auto& o : outcomesOf(batch)) {
      if (o.state == State::kCancelled) out[o.index] = o.error;
    }
    return out;
  };
  ASSERT_TRUE(
      settle([&] { return cancelled(first).size() == 2 && cancelled(second).size() == 2; }));
  EXPECT_EQ(cancelled(first), (std::map<uint32_t, std::string>{{1, "dependency root failed"},
                                                               {2, "dependency x was cancelled"}}));
  EXPECT_EQ(cancelled(second)[0], "dependency y was cancelled");
  EXPECT_EQ(cancelled(second)[1], "dependency far was cancelled");
  quiesce();
  EXPECT_EQ(heldIds(items("w1")), (std::set<std::string>{"free"}));  // none of them ran
  auto pending = pendingOf(second);
  EXPECT_TRUE(!pending || pending->waiting().empty());
  EXPECT_TRUE(fenced().empty());
}

TEST_F(BatchSchedulerTest, ANewLeaderReadsOutcomesItMissed) {
  addWorker("w1", 8, 0);
  submit({dependent("root", {}), dependent("next", {"root"})});
  start();
  ASSERT_TRUE(settle([&] { return held("w1") == 1; }));
  scheduler_->stop();
  scheduler_.reset();
  commitAll("w1");  // no leader sees it happen
  auto stat = admin_.set(layout_.epoch(), "leader-2", coord::kAnyVersion).get();
  ASSERT_TRUE(stat);
  epoch_ = stat->version;
  start();
  ASSERT_TRUE(settle([&] { return heldIds(items("w1")) == std::set<std::string>{"next"}; }));
  EXPECT_TRUE(fenced().empty());
}

// The outcomes the leader keeps of dependencies go when retention expires their batch: a
// long-lived leader's memory does not grow with every dependency that ever ended.
TEST_F(BatchSchedulerTest, RetentionForgetsTheOutcomesOfExpiredDependencies) {
  options_.retention_count = 1;
  addWorker("w1", 8, 0);
  const int64_t t = wall() - 10 * 60 * 1000;
  std::string first = submit({dependent("a", {})}, 0, t);
  std::string second = submit({dependent("b", {"a"})}, 0, t + 1000);
  start();
  ASSERT_TRUE(settle([&] { return heldIds(items("w1")) == std::set<std::string>{"a"}; }));
  commitAll("w1");
  ASSERT_TRUE(settle([&] { return heldIds(items("w1")) == std::set<std::string>{"b"}; }));
  commitAll("w1");
  ASSERT_TRUE(settle([&] { return outcomesOf(second).size() == 1; }));
  quiesce();
  EXPECT_EQ(scheduler_->snapshot().dependency_outcomes, 1u);  // a's, learned while b waited
  scheduler_->sweepNow();  // drops the finished batches' pending states
  ASSERT_TRUE(settle([&] { return !pendingOf(first) && !pendingOf(second); }));
  quiesce();
  scheduler_->sweepNow();  // 2 finished tasks, 1 kept: the older batch, a's, goes
  ASSERT_TRUE(settle([&] { return !server_->peek(layout_.batch(first)); }));
  EXPECT_TRUE(settle([&] { return scheduler_->snapshot().dependency_outcomes == 0; }));
  EXPECT_TRUE(server_->peek(layout_.batch(second)));
  EXPECT_TRUE(fenced().empty());
}

}  // namespace
}  // namespace drover::scheduler

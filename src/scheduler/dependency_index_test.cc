#include "scheduler/dependency_index.h"

#include <gtest/gtest.h>

namespace drover::scheduler {
namespace {

using tasks::State;
using tasks::TaskRef;

class DependencyIndexTest : public ::testing::Test {
 protected:
  TaskRef ref(uint32_t i) { return TaskRef{"b1", i}; }
  // a(0) -> b(1), c(2) -> d(3) -> e(4) -> f(5): a diamond and a chain, as one batch.
  void diamondAndChain() {
    EXPECT_TRUE(idx_.add(ref(1), "b", {ref(0)}, {"a"}).released.empty());
    EXPECT_TRUE(idx_.add(ref(2), "c", {ref(0)}, {"a"}).released.empty());
    EXPECT_TRUE(idx_.add(ref(3), "d", {ref(1), ref(2)}, {"b", "c"}).released.empty());
    EXPECT_TRUE(idx_.add(ref(4), "e", {ref(3)}, {"d"}).released.empty());
    EXPECT_TRUE(idx_.add(ref(5), "f", {ref(4)}, {"e"}).released.empty());
  }
  DependencyIndex idx_;
};

TEST_F(DependencyIndexTest, ReleasesATaskOnlyWhenEveryDependencySucceeded) {
  diamondAndChain();
  EXPECT_EQ(idx_.size(), 5u);
  EXPECT_EQ(idx_.waitingFor(ref(3)), (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(idx_.unresolved(), std::vector<TaskRef>{ref(0)});  // the root's outcome is unknown
  auto r = idx_.outcome(ref(0), State::kSucceeded);
  EXPECT_EQ(r.released, (std::vector<TaskRef>{ref(1), ref(2)}));
  EXPECT_TRUE(idx_.outcome(ref(1), State::kRunning).released.empty());  // not an outcome
  EXPECT_TRUE(idx_.outcome(ref(1), State::kSucceeded).released.empty());
  EXPECT_EQ(idx_.waitingFor(ref(3)), std::vector<std::string>{"c"});
  EXPECT_EQ(idx_.outcome(ref(2), State::kSucceeded).released, std::vector<TaskRef>{ref(3)});
  EXPECT_FALSE(idx_.blocked(ref(3)));
  EXPECT_TRUE(idx_.blocked(ref(4)));
  EXPECT_EQ(idx_.outcome(ref(3), State::kSucceeded).released, std::vector<TaskRef>{ref(4)});
  EXPECT_EQ(idx_.outcome(ref(4), State::kSucceeded).released, std::vector<TaskRef>{ref(5)});
  EXPECT_EQ(idx_.size(), 0u);
}

TEST_F(DependencyIndexTest, AFailedRootCancelsItsWholeSubgraphOnceWithReasons) {
  diamondAndChain();
  auto r = idx_.outcome(ref(0), State::kFailed);
  EXPECT_TRUE(r.released.empty());
  std::map<uint32_t, std::string> why;
  for (const auto& c : r.cancelled) EXPECT_TRUE(why.emplace(c.task.index, c.reason).second);
  EXPECT_EQ(why.size(), 5u);  // d is reached through b and c, cancelled once
  EXPECT_EQ(why[1], "dependency a failed");
  EXPECT_EQ(why[2], "dependency a failed");
  EXPECT_TRUE(why[3] == "dependency b was cancelled" || why[3] == "dependency c was cancelled");
  EXPECT_EQ(why[5], "dependency e was cancelled");
  EXPECT_EQ(idx_.size(), 0u);
  EXPECT_TRUE(idx_.unresolved().empty());
}

TEST_F(DependencyIndexTest, AMidGraphCancelLeavesTheRestWaiting) {
  diamondAndChain();
  idx_.outcome(ref(0), State::kSucceeded);
  auto r = idx_.outcome(ref(2), State::kCancelled);
  ASSERT_EQ(r.cancelled.size(), 3u);  // d, e, f
  EXPECT_EQ(r.cancelled[0].task, ref(3));
  EXPECT_EQ(r.cancelled[0].reason, "dependency c was cancelled");
  EXPECT_TRUE(idx_.outcome(ref(1), State::kSucceeded).released.empty());  // b had no waiters left
  EXPECT_EQ(idx_.size(), 0u);
}

TEST_F(DependencyIndexTest, OutcomesKnownBeforeAnAddCountAtOnce) {
  // A dependency the index already saw end (it had a waiter): a later dependent follows it.
  EXPECT_TRUE(idx_.add(ref(1), "b", {ref(0)}, {"a"}).released.empty());
  idx_.outcome(ref(0), State::kFailed);
  auto late = idx_.add(ref(7), "late", {ref(0)}, {"a"});
  ASSERT_EQ(late.cancelled.size(), 1u);
  EXPECT_EQ(late.cancelled[0].reason, "dependency a failed");
  EXPECT_FALSE(idx_.blocked(ref(7)));
  // A task with no open dependency is released by its add.
  auto none = idx_.add(ref(8), "free", {}, {});
  EXPECT_EQ(none.released, std::vector<TaskRef>{ref(8)});
  // drop: a user cancelled a waiting dependent; its dependency's end changes nothing.
  idx_.add(ref(9), "x", {TaskRef{"b2", 0}}, {"y"});
  idx_.drop(ref(9));
  EXPECT_TRUE(idx_.outcome(TaskRef{"b2", 0}, State::kSucceeded).released.empty());
  idx_.forgetBatch("b1");
  EXPECT_TRUE(idx_.add(ref(10), "z", {ref(0)}, {"a"}).cancelled.empty());  // forgotten
  EXPECT_EQ(idx_.unresolved(), std::vector<TaskRef>{ref(0)});
}

}  // namespace
}  // namespace drover::scheduler

#include "base/executor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <vector>

namespace drover::base {
namespace {

TEST(ThreadExecutor, RunsTasksInOrderOnItsOwnThread) {
  ThreadExecutor ex("test");
  std::vector<int> seen;
  std::promise<void> done;
  for (int i = 0; i < 100; ++i) {
    ex.post([&, i] {
      EXPECT_TRUE(ex.isCurrent());
      seen.push_back(i);
      if (i == 99) done.set_value();
    });
  }
  ASSERT_EQ(done.get_future().wait_for(seconds(5)), std::future_status::ready);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(seen[i], i);
  EXPECT_FALSE(ex.isCurrent());
}

TEST(ThreadExecutor, TimersFireInDueOrderAndCanBeCancelled) {
  ThreadExecutor ex;
  std::vector<int> seen;
  std::promise<void> done;
  // Hold the executor busy while the timers are set and one is cancelled, so the cancel cannot
  // lose a race with its timer on a loaded machine.
  std::promise<void> release;
  auto released = release.get_future().share();
  ex.post([released] { released.wait(); });
  auto start = std::chrono::steady_clock::now();
  ex.postAfter(milliseconds(40), [&] {
    seen.push_back(2);
    done.set_value();
  });
  TimerId cancelled = ex.postAfter(milliseconds(20), [&] { seen.push_back(99); });
  ex.postAfter(milliseconds(10), [&] { seen.push_back(1); });
  ex.cancel(cancelled);
  release.set_value();
  ASSERT_EQ(done.get_future().wait_for(seconds(5)), std::future_status::ready);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(40));
  EXPECT_EQ(seen, (std::vector<int>{1, 2}));
}

TEST(ThreadExecutor, StopDropsPendingWorkAndLaterPosts) {
  std::atomic<int> ran{0};
  auto ex = std::make_unique<ThreadExecutor>();
  ex->postAfter(seconds(60), [&] { ran++; });
  ex->stop();
  ex->post([&] { ran++; });
  EXPECT_EQ(ex->postAfter(milliseconds(1), [&] { ran++; }), 0u);
  ex.reset();
  EXPECT_EQ(ran.load(), 0);
}

TEST(ManualExecutor, NothingRunsUntilTimeIsAdvanced) {
  ManualExecutor ex;
  std::vector<int> seen;
  ex.postAfter(seconds(2), [&] { seen.push_back(2); });
  ex.postAfter(seconds(1), [&] {
    seen.push_back(1);
    ex.postAfter(milliseconds(500), [&] { seen.push_back(15); });
  });
  ex.post([&] { seen.push_back(0); });
  EXPECT_TRUE(seen.empty());
  EXPECT_EQ(ex.runReady(), 1u);
  EXPECT_EQ(seen, std::vector<int>{0});
  TimePoint t0 = ex.clock().now();
  ex.advance(milliseconds(1600));
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 15}));
  EXPECT_EQ(ex.clock().now() - t0, milliseconds(1600));
  ex.advance(seconds(1));
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 15, 2}));
}

TEST(ManualExecutor, CancelledTimersNeverRun) {
  ManualExecutor ex;
  bool ran = false;
  TimerId id = ex.postAfter(seconds(1), [&] { ran = true; });
  ex.cancel(id);
  ex.cancel(12345);
  ex.advance(seconds(2));
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace drover::base

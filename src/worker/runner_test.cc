#include "worker/runner.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>

#include "base/eventually.h"

namespace drover::worker {
namespace {

using namespace std::chrono_literals;

// Collects completions.
struct Outcomes {
  std::mutex mu;
  std::map<std::string, HandlerResult> results;

  Runner::Completion callback() {
    return [this](const std::string& id, HandlerResult r) {
      std::lock_guard lock(mu);
      results[id] = std::move(r);
    };
  }
  size_t size() {
    std::lock_guard lock(mu);
    return results.size();
  }
  std::optional<HandlerResult> get(const std::string& id) {
    std::lock_guard lock(mu);
    auto it = results.find(id);
    if (it == results.end()) return std::nullopt;
    return it->second;
  }
};

TaskContext ctxFor(std::string id, std::chrono::milliseconds timeout = 0ms) {
  TaskContext ctx;
  ctx.id = std::move(id);
  ctx.timeout = timeout;
  return ctx;
}

// Blocks until its token is cancelled, then fails with the reason.
HandlerResult blockUntilCancelled(TaskContext& ctx) {
  ctx.cancel.waitFor(60s);
  return HandlerResult::failure(std::string(cancelReasonName(ctx.cancel.reason())));
}

TEST(RunnerTest, RunsAndCompletes) {
  Runner runner(2);
  Outcomes outcomes;
  ASSERT_TRUE(runner.tryRun(
      ctxFor("a"), [](TaskContext& c) { return HandlerResult::success(c.id); },
      outcomes.callback()));
  ASSERT_TRUE(base::eventually([&] { return outcomes.size() == 1; }));
  EXPECT_TRUE(outcomes.get("a")->ok);
  EXPECT_EQ(outcomes.get("a")->result, "a");
  EXPECT_TRUE(base::eventually([&] { return runner.runningCount() == 0; }));
}

TEST(RunnerTest, SlotListenersHearOfEachFreedSlotUntilRemoved) {
  Runner runner(1);
  Outcomes outcomes;
  std::atomic<int> freed{0};
  std::atomic<bool> refilled{false};
  // The listener runs once the slot is free: a waiting user can take it right there.
  uint64_t id = runner.addSlotListener([&] {
    if (++freed == 1) {
      refilled = runner.tryRun(
          ctxFor("b"), [](TaskContext&) { return HandlerResult::success(nullptr); },
          outcomes.callback());
    }
  });
  ASSERT_TRUE(runner.tryRun(
      ctxFor("a"), [](TaskContext&) { return HandlerResult::success(nullptr); },
      outcomes.callback()));
  ASSERT_TRUE(base::eventually([&] { return outcomes.size() == 2 && freed == 2; }));
  EXPECT_TRUE(refilled);
  runner.removeSlotListener(id);
  ASSERT_TRUE(runner.tryRun(
      ctxFor("c"), [](TaskContext&) { return HandlerResult::success(nullptr); },
      outcomes.callback()));
  ASSERT_TRUE(base::eventually([&] { return outcomes.size() == 3 && runner.runningCount() == 0; }));
  EXPECT_EQ(freed, 2);
}

TEST(RunnerTest, NeverRunsMoreThanItsSlots) {
  Runner runner(2);
  Outcomes outcomes;
  std::atomic<int> concurrent{0}, peak{0};
  Handler h = [&](TaskContext& ctx) {
    int now = ++concurrent;
    int p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
    ctx.cancel.waitFor(60s);
    --concurrent;
    return HandlerResult::success();
  };
  EXPECT_TRUE(runner.tryRun(ctxFor("a"), h, outcomes.callback()));
  EXPECT_TRUE(runner.tryRun(ctxFor("b"), h, outcomes.callback()));
  EXPECT_FALSE(runner.tryRun(ctxFor("c"), h, outcomes.callback()));
  EXPECT_EQ(runner.runningCount(), 2);
  EXPECT_TRUE(runner.running("a"));
  EXPECT_FALSE(runner.running("c"));
  ASSERT_TRUE(base::eventually([&] { return concurrent.load() == 2; }));
  ASSERT_TRUE(runner.cancel("a"));
  ASSERT_TRUE(base::eventually([&] { return outcomes.size() == 1; }));
  // The slot is free again.
  EXPECT_TRUE(base::eventually([&] { return runner.runningCount() == 1; }));
  EXPECT_TRUE(runner.tryRun(ctxFor("c"), h, outcomes.callback()));
  EXPECT_FALSE(runner.tryRun(ctxFor("d"), h, outcomes.callback()));
  runner.cancel("b");
  runner.cancel("c");
  ASSERT_TRUE(base::eventually([&] { return outcomes.size() == 3; }));
  EXPECT_EQ(peak.load(), 2);
}

TEST(RunnerTest, RefusesADuplicateId) {
  Runner runner(3);
  Outcomes outcomes;
  EXPECT_TRUE(runner.tryRun(ctxFor("a"), blockUntilCancelled, outcomes.callback()));
  EXPECT_FALSE(runner.tryRun(ctxFor("a"), blockUntilCancelled, outcomes.callback()));
  runner.cancel("a");
  ASSERT_TRUE(base::eventually([&] { return outcomes.size() == 1; }));
}

TEST(RunnerTest, TimeoutCancelsAndFails) {
  Runner runner(1);
  Outcomes outcomes;
  CancelReason seen = CancelReason::kNone;
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(runner.tryRun(
      ctxFor("t", 100ms),
      [&](TaskContext& ctx) {
        EXPECT_TRUE(ctx.deadline.has_value());
        ctx.cancel.waitFor(60s);
        seen = ctx.cancel.reason();
        return HandlerResult::success("late");
      },
      outcomes.callback()));
  ASSERT_TRUE(base::eventually([&] { return outcomes.size() == 1; }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
  auto r = *outcomes.get("t");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "timed out after 0.1 s");
  EXPECT_EQ(r.result, "late");
  EXPECT_EQ(seen, CancelReason::kTimedOut);
}

TEST(RunnerTest, NoTimeoutMeansNoDeadline) {
  Runner runner(1);
  Outcomes outcomes;
  ASSERT_TRUE(runner.tryRun(
      ctxFor("n"),
      [](TaskContext& ctx) {
        return ctx.deadline ? HandlerResult::failure("deadline") : HandlerResult::success();
      },
      outcomes.callback()));
  ASSERT_TRUE(base::eventually([&] { return outcomes.size() == 1; }));
  EXPECT_TRUE(outcomes.get("n")->ok);
}

TEST(RunnerTest, CancelStopsOneRun) {
  Runner runner(2);
  Outcomes outcomes;
  ASSERT_TRUE(runner.tryRun(ctxFor("a"), blockUntilCancelled, outcomes.callback()));
  ASSERT_TRUE(runner.tryRun(ctxFor("b"), blockUntilCancelled, outcomes.callback()));
  EXPECT_FALSE(runner.cancel("nope"));
  EXPECT_TRUE(runner.cancel("a"));
  EXPECT_FALSE(runner.cancel("a", CancelReason::kShutdown));  // first cancel wins
  ASSERT_TRUE(base::eventually([&] { return outcomes.get("a").has_value(); }));
  EXPECT_EQ(outcomes.get("a")->error, "cancelled");
  EXPECT_FALSE(outcomes.get("b").has_value());
  runner.cancel("b");
  ASSERT_TRUE(base::eventually([&] { return outcomes.size() == 2; }));
}

TEST(RunnerTest, StopCancelsEverythingWithShutdownAndWaits) {
  Outcomes outcomes;
  {
    Runner runner(3);
    ASSERT_TRUE(runner.tryRun(ctxFor("a"), blockUntilCancelled, outcomes.callback()));
    ASSERT_TRUE(runner.tryRun(ctxFor("b"), blockUntilCancelled, outcomes.callback()));
    runner.stop();
    EXPECT_EQ(outcomes.size(), 2u);  // stop() returned after the completions
    EXPECT_EQ(outcomes.get("a")->error, "shutdown");
    EXPECT_EQ(outcomes.get("b")->error, "shutdown");
    EXPECT_FALSE(runner.tryRun(ctxFor("c"), blockUntilCancelled, outcomes.callback()));
    EXPECT_EQ(runner.runningCount(), 0);
    runner.stop();  // idempotent
  }
  EXPECT_EQ(outcomes.size(), 2u);
}

TEST(RunnerTest, HandlerExceptionIsAFailure) {
  Runner runner(1);
  Outcomes outcomes;
  ASSERT_TRUE(runner.tryRun(
      ctxFor("x"), [](TaskContext&) -> HandlerResult { throw std::runtime_error("kaput"); },
      outcomes.callback()));
  ASSERT_TRUE(base::eventually([&] { return outcomes.size() == 1; }));
  EXPECT_FALSE(outcomes.get("x")->ok);
  EXPECT_NE(outcomes.get("x")->error.find("kaput"), std::string::npos);
}

TEST(RunnerTest, CompletionMayStartTheNextRun) {
  Runner runner(1);
  Outcomes outcomes;
  std::atomic<bool> second{false};
  ASSERT_TRUE(runner.tryRun(
      ctxFor("a"), [](TaskContext&) { return HandlerResult::success(); },
      [&](const std::string&, HandlerResult) {
        second = runner.tryRun(
            ctxFor("b"), [](TaskContext&) { return HandlerResult::success(); },
            outcomes.callback());
      }));
  ASSERT_TRUE(base::eventually([&] { return outcomes.size() == 1; }));
  EXPECT_TRUE(second.load());
}

}  // namespace
}  // namespace drover::worker

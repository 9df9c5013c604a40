#include <gtest/gtest.h>

#include "worker/chunk_agent_test_fixture.h"

// ChunkAgent when others change its chunks or its session ends: reclaimed and cancelled tasks,
// the running report, prefetch order, session expiry, ambiguous commits.

namespace drover::worker::agent_test {
namespace {

TEST_F(ChunkAgentTest, AReclaimedTasksOutcomeIsFencedAndTheRestCommitted) {
  startAgent();
  std::string batch = submit({spec("gate"), spec("gate")});
  std::string c = assign(batch, {0, 1});
  ASSERT_TRUE(until([&] { return gate_runs_ == 2; }));
  // The leader reclaims task 0 just before the worker's commit of both: the commit fails on the
  // chunk's version, the worker reads the chunk again and commits only task 1.
  std::atomic<bool> reclaimed{false};
  worker_coord_.beforeNextOn(OpKind::kMulti, layout_.chunk(kWorker, c), [&] {
    auto now = chunk(c);
    auto [v, state] = pending(batch);
    state.wait(0, tasks::Waiting{});
    const tasks::ChunkItem item = now->second.items[0];
    auto b = tasks::v2::Builder::fenced(layout_, 0);
    b.reclaim(tasks::v2::ChunkWrite{kWorker, c, now->first, now->second.without({item.ref})},
              {item}, {tasks::v2::PendingWrite{batch, v, state}}, base::wallMillis());
    ASSERT_TRUE(admin_.multi(std::move(b).finish().ops).get());
    reclaimed = true;
  });
  release_ = true;
  settle();
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 1; }));
  EXPECT_TRUE(reclaimed);
  EXPECT_GE(tap_.failed_multis, 1);
  EXPECT_EQ(agent_->stats().fenced_commits, 1u);
  auto out = outcomes(batch);
  EXPECT_EQ(out.count(0), 0u);
  EXPECT_EQ(out[1].state, State::kSucceeded);
  EXPECT_NE(pending(batch).second.waitingAt(0), nullptr);
  EXPECT_FALSE(chunk(c));
}

TEST_F(ChunkAgentTest, ACancelThatRewritesTheChunkStopsTheRun) {
  startAgent();
  std::string batch = submit({spec("block"), spec("gate")});
  std::string c = assign(batch, {0, 1});
  ASSERT_TRUE(until([&] { return block_runs_ == 1 && gate_runs_ == 1; }));  // both entered
  EXPECT_EQ(agent_->stats().running, 2);
  // The API cancels task 0: the chunk without it, the pending state without it, its outcome.
  auto now = chunk(c);
  auto [v, state] = pending(batch);
  state.erase(0);
  tasks::Outcome cancelled;
  cancelled.index = 0;
  cancelled.state = State::kCancelled;
  cancelled.finished_at = base::wallMillis();
  tasks::v2::Builder b(layout_);
  b.cancel(now->second.items[0], tasks::v2::PendingWrite{batch, v, state},
           tasks::v2::ChunkWrite{kWorker, c, now->first, now->second.without({{batch, 0}})},
           cancelled);
  ASSERT_TRUE(admin_.multi(std::move(b).finish().ops).get());
  ASSERT_TRUE(until([&] {
    std::lock_guard lock(mu_);
    return reasons_.count(generatedId({batch, 0})) != 0;
  }));
  {
    std::lock_guard lock(mu_);
    EXPECT_EQ(reasons_[generatedId({batch, 0})], CancelReason::kCancelled);
  }
  ASSERT_TRUE(until([&] { return agent_->stats().fenced_commits == 1; }));
  release_ = true;
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 1; }));
  std::map<uint32_t, int> times;
  auto out = outcomes(batch, &times);
  EXPECT_EQ(out[0].state, State::kCancelled);  // the API's outcome, and only it
  EXPECT_EQ(times[0], 1);
  EXPECT_EQ(out[1].state, State::kSucceeded);
}

TEST_F(ChunkAgentTest, TheRunningReportIsWrittenAndCoalesced) {
  startAgent();
  std::string path = layout_.worker(kWorker);
  // A task that ends within mark_running_after never appears.
  std::string quick = submit({spec("noop")});
  assign(quick, {0});
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 1; }));
  exec_.advance(300ms);
  EXPECT_EQ(tap_.sets(path), 0);

  std::string batch = submit({spec("gate"), spec("gate")});
  assign(batch, {0});
  ASSERT_TRUE(until([&] { return gate_runs_ == 1; }));
  exec_.advance(20ms);
  ASSERT_TRUE(until([&] { return tap_.sets(path) == 1; }));
  auto info = workerInfo();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->running.size(), 1u);
  EXPECT_EQ(info->running.count(generatedId({batch, 0})), 1u);
  EXPECT_EQ(info->slots, 4);  // the rest of the record is kept

  // A second change right after goes out at once too (a burst of two)...
  assign(batch, {1});
  ASSERT_TRUE(until([&] { return gate_runs_ == 2; }));
  exec_.advance(20ms);
  ASSERT_TRUE(until([&] { return tap_.sets(path) == 2; }));
  EXPECT_EQ(workerInfo()->running.size(), 2u);

  // ...and a third waits for the rate: 250 ms after the first.
  release_ = true;
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 3; }));
  exec_.advance(200ms);
  exec_.runReady();
  EXPECT_EQ(tap_.sets(path), 2);
  exec_.advance(50ms);
  ASSERT_TRUE(until([&] { return tap_.sets(path) == 3; }));
  EXPECT_TRUE(workerInfo()->running.empty());
}

TEST_F(ChunkAgentTest, PrefetchedSurplusStartsAsSlotsFreeInPriorityOrder) {
  startAgent(/*slots=*/1);
  std::string batch =
      submit({spec("gate"), spec("record", 3, 1), spec("record", 3, 9), spec("record", 3, 5)});
  assign(batch, {0});
  ASSERT_TRUE(until([&] { return gate_runs_ == 1; }));
  assign(batch, {1, 2, 3});
  ASSERT_TRUE(until([&] { return chunk(tasks::makeChunkName(0, 2)).has_value(); }));
  for (int i = 0; i < 20; ++i) exec_.runReady();
  {
    std::lock_guard lock(mu_);
    EXPECT_TRUE(order_.empty());  // read, but waiting: the one slot is taken
  }
  EXPECT_EQ(agent_->stats().running, 1);
  release_ = true;  // the slot frees; the Runner's notification starts the next, no timer
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 4; }));
  std::lock_guard lock(mu_);
  EXPECT_EQ(order_, (std::vector<std::string>{generatedId({batch, 2}), generatedId({batch, 3}),
                                              generatedId({batch, 1})}));
}

TEST_F(ChunkAgentTest, SessionExpiryMakesItDeadAndCancelsItsRuns) {
  startAgent();
  std::string batch = submit({spec("block")});
  assign(batch, {0});
  // The handler itself must be running: a task cancelled while still queued in the Runner ends
  // without entering its handler, and the test would see no reason recorded.
  ASSERT_TRUE(until([&] { return block_runs_ == 1; }));
  EXPECT_EQ(agent_->stats().running, 1);
  EXPECT_FALSE(agent_->dead());
  worker_coord_.expireSession(/*rebuild=*/true);
  ASSERT_TRUE(until([&] { return agent_->dead(); }));
  ASSERT_TRUE(until([&] {
    std::lock_guard lock(mu_);
    return reasons_.count(generatedId({batch, 0})) != 0;
  }));
  std::lock_guard lock(mu_);
  EXPECT_EQ(reasons_[generatedId({batch, 0})], CancelReason::kShutdown);
  EXPECT_TRUE(outcomes(batch).empty());  // nothing committed: the leader requeues
}

TEST_F(ChunkAgentTest, ItsAssignmentFolderGoneMakesItDead) {
  startAgent();
  ASSERT_TRUE(admin_.remove(layout_.assignmentsOf(kWorker), coord::kAnyVersion).get());
  ASSERT_TRUE(until([&] { return agent_->dead(); }));
}

TEST_F(ChunkAgentTest, AnAmbiguousCommitIsSettledByReadingTheChunk) {
  startAgent();
  std::string batch = submit({spec("noop"), spec("gate")});
  // The commit of task 0 lands but its reply is lost: the chunk (without task 0) tells.
  worker_coord_.failNext(OpKind::kMulti, Code::kConnectionLoss, coord::FaultMode::kAfterApply);
  std::string c = assign(batch, {0, 1});
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 1; }));
  EXPECT_EQ(worker_coord_.pendingFaults(), 0u);
  release_ = true;
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 2; }));
  std::map<uint32_t, int> times;
  outcomes(batch, &times);
  EXPECT_EQ(times[0], 1);  // never recorded twice
  EXPECT_EQ(times[1], 1);
  EXPECT_FALSE(chunk(c));
}

}  // namespace
}  // namespace drover::worker::agent_test

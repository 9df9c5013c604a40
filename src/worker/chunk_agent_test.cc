#include <gtest/gtest.h>

#include "worker/chunk_agent_test_fixture.h"

// ChunkAgent running its chunks and committing outcomes: grouped commits, retries back to
// pending, specs read from the batch record. Fencing, cancels, the running report and
// session loss: chunk_agent_fence_test.cc.

namespace drover::worker::agent_test {
namespace {

TEST_F(ChunkAgentTest, RunsAChunkAndCommitsWhatIsReadyTogetherInOneMulti) {
  startAgent();
  std::string batch = submit({spec("gate"), spec("gate"), spec("gate"), spec("gate")});
  std::string c1 = assign(batch, {0, 1});
  std::string c2 = assign(batch, {2, 3});
  ASSERT_TRUE(until([&] { return gate_runs_ == 4; }));
  int before = tap_.multis;
  release_ = true;
  settle();
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 4; }));
  // Both chunks' commits in one multi; both chunks deleted (nothing left in them).
  EXPECT_EQ(tap_.multis - before, 1);
  EXPECT_EQ(tap_.failed_multis, 0);
  EXPECT_FALSE(chunk(c1));
  EXPECT_FALSE(chunk(c2));
  std::map<uint32_t, int> times;
  auto out = outcomes(batch, &times);
  ASSERT_EQ(out.size(), 4u);
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(out[i].state, State::kSucceeded) << i;
    EXPECT_EQ(out[i].worker, kWorker);
    EXPECT_EQ(out[i].attempt, 1);
    EXPECT_GT(out[i].finished_at, 0);
    EXPECT_EQ(times[i], 1);
  }
  // One result record per chunk commit and batch.
  EXPECT_EQ(admin_.children(layout_.batch(batch), nullptr).get()->size(), 2u);
}

// A commit names its event record for the webhook dispatcher: "n-" when no task it ends has a
// callback_url (the dispatcher skips it unread), "e-" when one has.
TEST_F(ChunkAgentTest, ACommitSaysWhetherATaskItEndsHasACallback) {
  startAgent();
  auto newest = [&] {
    auto kids = admin_.children(layout_.events(), nullptr).get();
    auto last = std::max_element(kids->begin(), kids->end(), coord::bySequence);
    return last == kids->end() ? std::string() : *last;
  };
  tasks::TaskSpec hooked = spec("record");
  hooked.callback_url = "http://127.0.0.1:9/hook";
  std::string batch = submit({spec("record"), hooked});
  assign(batch, {0});
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 1; }));
  ASSERT_TRUE(until([&] { return newest().rfind("n-", 0) == 0 && outcomes(batch).size() == 1; }));
  assign(batch, {1});
  ASSERT_TRUE(until([&] { return outcomes(batch).size() == 2; }));
  EXPECT_EQ(newest().substr(0, 2), "e-");
}

// One commit multi in flight per worker: outcomes that finish while it is out wait for its reply
// and then share one multi, whatever chunk they come from (docs/ZNODES.md, the worker's side).
TEST_F(ChunkAgentTest, OutcomesReadyWhileACommitIsInFlightGoOutTogetherAfterIt) {
  startAgent();
  std::string batch = submit({spec("record"), spec("gate"), spec("gate")});
  tap_.hold = true;
  assign(batch, {0});
  ASSERT_TRUE(until([&] { return tap_.held() == 1; }));  // its commit is out, reply held
  int sent = tap_.multis;
  std::string c2 = assign(batch, {1});
  std::string c3 = assign(batch, {2});
  ASSERT_TRUE(until([&] { return gate_runs_ == 2; }));
  release_ = true;
  settle();
  ASSERT_TRUE(until([&] { return agent_->stats().running == 0; }));
  EXPECT_EQ(tap_.multis, sent);  // both wait: nothing sent while a commit is in flight
  tap_.hold = false;
  tap_.releaseHeld();
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 3; }));
  EXPECT_EQ(tap_.multis, sent + 1);  // then one multi for both chunks
  EXPECT_EQ(tap_.failed_multis, 0);
  EXPECT_FALSE(chunk(c2));
  EXPECT_FALSE(chunk(c3));
  std::map<uint32_t, int> times;
  auto out = outcomes(batch, &times);
  ASSERT_EQ(out.size(), 3u);
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(out[i].state, State::kSucceeded) << i;
    EXPECT_EQ(times[i], 1) << i;
  }
}

// A chunk's name is never used again, so once it is deleted no watch may stay on its path: the
// worker once re-armed an exists watch on every deleted chunk, and tens of thousands of them
// stalled the ZooKeeper client's I/O thread after a reconnect.
TEST_F(ChunkAgentTest, NoWatchOutlivesAFinishedChunk) {
  startAgent();
  settle();
  const size_t idle = server_->watchCount();
  std::vector<std::string> names;
  for (int round = 0; round < 20; ++round) {
    std::string batch = submit({spec("noop"), spec("noop"), spec("noop")});
    names.push_back(assign(batch, {0}));
    names.push_back(assign(batch, {1, 2}));
  }
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 60; }));
  settle();
  for (const auto& name : names) EXPECT_FALSE(chunk(name)) << name;
  // The assignment folder's child watch (and the test's own) is all that is left.
  EXPECT_LE(server_->watchCount(), idle + 1);
}

TEST_F(ChunkAgentTest, AFailureWithAttemptsLeftGoesBackToPendingWithNotBefore) {
  startAgent();
  std::string batch = submit({spec("fail", 3), spec("noop")});
  // The leader changes the pending state between the worker's read and its commit: the commit
  // fails on that version, and the worker reads it again and retries.
  std::atomic<bool> raced{false};
  worker_coord_.beforeNextOn(OpKind::kMulti, layout_.pending(batch), [&] {
    auto [v, state] = pending(batch);
    ASSERT_TRUE(admin_.set(layout_.pending(batch), tasks::encode(state), v).get());
    raced = true;
  });
  int64_t before = base::wallMillis();
  std::string c = assign(batch, {0, 1});
  ASSERT_TRUE(
      until([&] { return agent_->stats().retried == 1 && agent_->stats().succeeded == 1; }));
  EXPECT_TRUE(raced);
  EXPECT_EQ(worker_coord_.pendingFaults(), 0u);
  EXPECT_GE(tap_.failed_multis, 1);
  auto [v, state] = pending(batch);
  const tasks::Waiting* w = state.waitingAt(0);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->attempt, 2);
  EXPECT_GE(w->not_before, before + 10'000);
  EXPECT_LE(w->not_before, base::wallMillis() + 10'000);
  EXPECT_NE(w->error.find("fail"), std::string::npos) << w->error;
  EXPECT_EQ(state.heldAt(0), nullptr);
  auto out = outcomes(batch);
  EXPECT_EQ(out.count(0), 0u);  // not terminal: no outcome, only its attempt's end (history)
  size_t history = 0;
  auto kids = admin_.children(layout_.batch(batch), nullptr).get();
  ASSERT_TRUE(kids);
  for (const auto& k : *kids) {
    auto node = admin_.get(layout_.batch(batch) + "/" + k, nullptr).get();
    ASSERT_TRUE(node);
    auto rec = tasks::decodeResults(node->data);
    ASSERT_TRUE(rec);
    for (const auto& o : rec->outcomes) {
      if (o.index == 0 && o.state == State::kPending && o.attempt == 1) ++history;
    }
  }
  EXPECT_EQ(history, 1u);
  EXPECT_EQ(out[1].state, State::kSucceeded);
  EXPECT_FALSE(chunk(c));
}

TEST_F(ChunkAgentTest, OutOfAttemptsTheFailureIsItsOutcome) {
  startAgent();
  std::string batch = submit({spec("fail", 1)});
  assign(batch, {0});
  ASSERT_TRUE(until([&] { return agent_->stats().failed == 1; }));
  auto out = outcomes(batch);
  ASSERT_EQ(out.count(0), 1u);
  EXPECT_EQ(out[0].state, State::kFailed);
  EXPECT_FALSE(out[0].error.empty());
  EXPECT_TRUE(pending(batch).second.waiting().empty());
  EXPECT_EQ(agent_->stats().retried, 0u);
}

TEST_F(ChunkAgentTest, SpecsNotInlineAreReadFromTheBatchRecordOnce) {
  startAgent();
  tasks::TaskSpec echo = spec("echo");
  echo.payload = Json{{"x", 7}};
  std::string batch = submit({echo, echo, spec("nosuchtype")});
  assign(batch, {0, 1, 2}, /*inline_specs=*/false);
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 2 && agent_->stats().failed == 1; }));
  EXPECT_EQ(tap_.gets(layout_.batch(batch)), 1);
  auto out = outcomes(batch);
  EXPECT_EQ(out[0].result, (Json{{"x", 7}}));
  EXPECT_EQ(out[2].state, State::kFailed);  // rejected: the spec's type is unknown here
  EXPECT_NE(out[2].error.find("nosuchtype"), std::string::npos);
  EXPECT_EQ(agent_->stats().rejected, 1u);
}

}  // namespace
}  // namespace drover::worker::agent_test

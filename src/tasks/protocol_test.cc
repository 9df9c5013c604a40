#include <gtest/gtest.h>

#include "tasks/inspect.h"
#include "tasks/protocol_test_fixture.h"

// The transitions of the task path: submit, assign, commit, requeue, reclaim (the API on
// submit, the leader, the worker). Cancel, retry, retention and the reads: protocol_api_test.cc.

namespace drover::tasks::v2 {
namespace {

using coord::Code;

TEST_F(ProtocolTest, SubmitWritesOneRecordOnePendingStateAndIdEntriesOnly) {
  Builder b(layout_);
  b.submit(record(batch_, 500, {"mine"}));
  EXPECT_EQ(b.ops(), 3u);  // batch record, pending state, one id entry: not one per task
  apply(std::move(b));
  auto [state, version] = pending(batch_);
  EXPECT_EQ(state.waiting().size(), 500u);
  EXPECT_EQ(state.waitingAt(499)->attempt, 1);
  auto id = coord_->get(layout_.idEntry("mine"), nullptr).get();
  ASSERT_TRUE(id);
  EXPECT_EQ(decodeRef(id->data), (TaskRef{batch_, 0}));
  auto events = lastEvents();
  ASSERT_EQ(events.size(), 500u);
  EXPECT_EQ(events[0].id, "mine");
  EXPECT_EQ(events[1].id, generatedId({batch_, 1}));
  EXPECT_EQ(events[1].state, State::kPending);
}

TEST_F(ProtocolTest, SubmitGivesEachDelayedTaskItsOwnTime) {
  BatchRecord rec = record(batch_, 4);
  rec.tasks[1].run_at = 5'000;
  rec.tasks[2].run_at = 9'000;
  Builder b(layout_);
  b.submit(rec, 7'000);  // the batch's floor: a task's own time counts when later
  apply(std::move(b));
  auto [state, version] = pending(batch_);
  EXPECT_EQ(state.waitingAt(0)->not_before, 7'000);
  EXPECT_EQ(state.waitingAt(1)->not_before, 7'000);
  EXPECT_EQ(state.waitingAt(2)->not_before, 9'000);
  EXPECT_EQ(state.waitingAt(3)->not_before, 7'000);
  auto read = coord_->get(layout_.batch(batch_), nullptr).get();
  ASSERT_TRUE(read);
  auto decoded = decodeBatch(batch_, read->data);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->tasks[2].run_at, 9'000);  // the record keeps the time for readers
}

TEST_F(ProtocolTest, SubmitOfATakenIdNamesTheIdAndWritesNothing) {
  Builder first(layout_);
  first.submit(record(batch_, 1, {"mine"}));
  apply(std::move(first));
  Builder second(layout_);
  second.submit(record(other_, 2, {"fresh", "mine"}));
  Role role = failing(std::move(second), Code::kNodeExists);
  EXPECT_EQ(role.part, Part::kId);
  EXPECT_EQ(role.key, "mine");
  EXPECT_FALSE(exists(layout_.batch(other_)));
  EXPECT_FALSE(exists(layout_.idEntry("fresh")));
}

TEST_F(ProtocolTest, SubmitIntoAMissingTimeBucketNamesTheBatchRecord) {
  std::string later = makeBatchName(1'796'083'200'000 + 10'000'000, 3);
  Builder b(layout_);
  b.submit(record(later, 1));
  Role role = failing(std::move(b), Code::kNoNode);
  EXPECT_EQ(role.part, Part::kBatch);
  EXPECT_EQ(role.key, later);
}

TEST_F(ProtocolTest, AssignMovesTokensIntoAChunkAndIsFenced) {
  submitAndAssign(4, 2, "c-1");
  auto [state, version] = pending(batch_);
  EXPECT_EQ(state.waiting().size(), 2u);
  EXPECT_EQ(state.heldAt(1)->chunk, "c-1");
  EXPECT_EQ(chunk("c-1").first.items.size(), 2u);
  EXPECT_EQ(lastEvents().size(), 2u);
  EXPECT_EQ(lastEvents()[0].state, State::kAssigned);

  // A second leader that read the pending state before the first assign: its version is stale.
  PendingState stale = state;
  stale.hold(2, Held{"w1", "c-2"});
  Chunk c2{{item(batch_, 2)}};
  Builder late = Builder::fenced(layout_, 0);
  late.assign({PendingWrite{batch_, version - 1, stale}}, "w1", "c-2", c2, 300);
  Role role = failing(std::move(late), Code::kBadVersion);
  EXPECT_EQ(role.part, Part::kPending);
  EXPECT_EQ(role.key, batch_);
  EXPECT_FALSE(exists(layout_.chunk("w1", "c-2")));

  // A deposed leader (the epoch moved on) writes nothing either.
  ASSERT_TRUE(coord_->set(layout_.epoch(), "", coord::kAnyVersion).get());
  Builder zombie = Builder::fenced(layout_, 0);
  zombie.assign({PendingWrite{batch_, version, stale}}, "w1", "c-2", c2, 300);
  EXPECT_EQ(failing(std::move(zombie), Code::kBadVersion).part, Part::kEpoch);
}

TEST_F(ProtocolTest, CommitRecordsOutcomesRetriesAndFencesAZombie) {
  submitAndAssign(4, 3, "c-1");
  auto [c, cv] = chunk("c-1");
  // Task 0 succeeded, task 1 failed and goes back for attempt 2; task 2 still runs.
  ResultRecord done;
  done.outcomes.push_back(Outcome{0, "", State::kSucceeded, 1, "w1", 210, 220, "", Json(7)});
  auto [state, pv] = pending(batch_);
  state.wait(1, Waiting{2, 5000, "exit 1"});
  Builder b(layout_);
  b.commit(ChunkWrite{"w1", "c-1", cv, c.without({{batch_, 0}, {batch_, 1}})}, {{batch_, done}},
           {PendingWrite{batch_, pv, state}}, {item(batch_, 1)}, 230);
  apply(std::move(b));

  auto rest = chunk("c-1").first;
  ASSERT_EQ(rest.items.size(), 1u);
  EXPECT_EQ(rest.items[0].ref.index, 2u);
  auto records = results(batch_);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].find(0)->result, Json(7));
  EXPECT_EQ(pending(batch_).first.waitingAt(1)->attempt, 2);
  auto events = lastEvents();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].state, State::kSucceeded);
  EXPECT_EQ(events[1].state, State::kPending);
  EXPECT_EQ(events[1].attempt, 2);

  // A zombie holding the chunk's old version: its commit of task 2 records nothing.
  ResultRecord late;
  late.outcomes.push_back(Outcome{2, "", State::kSucceeded, 1, "w1", 210, 240, "", nullptr});
  Builder z(layout_);
  z.commit(ChunkWrite{"w1", "c-1", cv, Chunk{}}, {{batch_, late}}, {}, {}, 240);
  Role role = failing(std::move(z), Code::kBadVersion);
  EXPECT_EQ(role.part, Part::kChunk);
  EXPECT_EQ(role.key, layout_.chunk("w1", "c-1"));
  EXPECT_EQ(results(batch_).size(), 1u);
}

// An event record is named "n-" when no terminal event in it can need a webhook delivery, so
// that the webhook dispatcher skips it unread: records with no terminal event, and multis whose
// writer said none of its ended tasks has a callback_url. Unknown is "e-" (read).
TEST_F(ProtocolTest, EventRecordsSayWhetherTheyMayNeedAWebhook) {
  submitAndAssign(4, 4, "c-1");
  auto names = [&] {
    auto kids = coord_->children(layout_.events(), nullptr).get();
    std::vector<std::string> out = kids ? *kids : std::vector<std::string>{};
    std::sort(out.begin(), out.end(), coord::bySequence);
    return out;
  };
  auto commit = [&](uint32_t index, std::vector<bool> said) {
    auto [c, cv] = chunk("c-1");
    ResultRecord done;
    done.outcomes.push_back(Outcome{index, "", State::kSucceeded, 1, "w1", 1, 2, "", nullptr});
    Builder b(layout_);
    b.commit(ChunkWrite{"w1", "c-1", cv, c.without({{batch_, index}})}, {{batch_, done}}, {}, {},
             3);
    for (bool any : said) b.callbacks(any);
    apply(std::move(b));
    return names().back();
  };
  auto first = names();
  ASSERT_EQ(first.size(), 2u);  // submit and assign: nothing terminal
  EXPECT_EQ(first[0].substr(0, 2), "n-");
  EXPECT_EQ(first[1].substr(0, 2), "n-");
  EXPECT_EQ(commit(0, {false}).substr(0, 2), "n-");
  EXPECT_EQ(commit(1, {}).substr(0, 2), "e-");  // the writer did not say
  EXPECT_EQ(commit(2, {false, true}).substr(0, 2), "e-");
  EXPECT_FALSE(mayHoldCallbacks(first[0]));
  EXPECT_TRUE(mayHoldCallbacks(names().back()));
  EXPECT_EQ(names().size(), 5u);
}

TEST_F(ProtocolTest, CommitOfTheLastTasksDeletesTheChunk) {
  submitAndAssign(2, 2, "c-1");
  auto [c, cv] = chunk("c-1");
  ResultRecord done;
  done.outcomes.push_back(Outcome{0, "", State::kSucceeded, 1, "w1", 1, 2, "", nullptr});
  done.outcomes.push_back(Outcome{1, "", State::kFailed, 1, "w1", 1, 2, "boom", nullptr});
  Builder b(layout_);
  b.commit(ChunkWrite{"w1", "c-1", cv, Chunk{}}, {{batch_, done}}, {}, {}, 3);
  apply(std::move(b));
  EXPECT_FALSE(exists(layout_.chunk("w1", "c-1")));
  ASSERT_EQ(results(batch_).size(), 1u);
  EXPECT_EQ(results(batch_)[0].find(1)->error, "boom");
}

TEST_F(ProtocolTest, RequeueReturnsTasksAndRecordsTheExhausted) {
  submitAndAssign(3, 2, "c-1");
  auto [c, cv] = chunk("c-1");
  auto [state, pv] = pending(batch_);
  state.wait(0, Waiting{2, 0, "worker w1 left"});
  state.erase(1);  // out of attempts
  ResultRecord failed;
  failed.outcomes.push_back(
      Outcome{1, "", State::kFailed, 1, "w1", 0, 500, "worker w1 left", nullptr});

  Builder stale = Builder::fenced(layout_, 0);
  stale.requeue(ChunkWrite{"w1", "c-1", cv + 1, Chunk{}}, {PendingWrite{batch_, pv, state}},
                {item(batch_, 0)}, {{batch_, failed}}, 500);
  EXPECT_EQ(failing(std::move(stale), Code::kBadVersion).part, Part::kChunk);

  Builder b = Builder::fenced(layout_, 0);
  b.requeue(ChunkWrite{"w1", "c-1", cv, Chunk{}}, {PendingWrite{batch_, pv, state}},
            {item(batch_, 0)}, {{batch_, failed}}, 500);
  apply(std::move(b));
  EXPECT_FALSE(exists(layout_.chunk("w1", "c-1")));
  auto after = pending(batch_).first;
  EXPECT_EQ(after.waitingAt(0)->attempt, 2);
  EXPECT_EQ(after.waitingAt(1), nullptr);
  EXPECT_EQ(after.heldAt(1), nullptr);
  EXPECT_EQ(results(batch_)[0].find(1)->state, State::kFailed);
}

TEST_F(ProtocolTest, ReclaimTakesUnstartedTasksBackFromAChunk) {
  submitAndAssign(3, 3, "c-1");
  auto [c, cv] = chunk("c-1");
  auto [state, pv] = pending(batch_);
  state.wait(2, Waiting{});
  Builder b = Builder::fenced(layout_, 0);
  b.reclaim(ChunkWrite{"w1", "c-1", cv, c.without({{batch_, 2}})}, {item(batch_, 2)},
            {PendingWrite{batch_, pv, state}}, 600);
  apply(std::move(b));
  EXPECT_EQ(chunk("c-1").first.items.size(), 2u);
  EXPECT_TRUE(pending(batch_).first.waitingAt(2));
  // The worker's commit that still counted task 2 as its own fails on the chunk's version.
  Builder w(layout_);
  w.commit(ChunkWrite{"w1", "c-1", cv, Chunk{}}, {}, {}, {}, 601);
  EXPECT_EQ(failing(std::move(w), Code::kBadVersion).part, Part::kChunk);
}

TEST_F(ProtocolTest, CommitRecordsARetriedAttemptAsPendingHistoryWithOneEvent) {
  submitAndAssign(2, 1, "c-1");
  auto [c, cv] = chunk("c-1");
  auto [state, pv] = pending(batch_);
  state.wait(0, Waiting{2, 0, "exit 1"});
  ResultRecord history;
  history.outcomes.push_back(Outcome{0, "", State::kPending, 1, "w1", 10, 20, "exit 1", nullptr});
  Builder b(layout_);
  b.commit(ChunkWrite{"w1", "c-1", cv, Chunk{}}, {{batch_, history}},
           {PendingWrite{batch_, pv, state}}, {item(batch_, 0)}, 30);
  apply(std::move(b));
  auto records = results(batch_);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].find(0)->state, State::kPending);
  EXPECT_EQ(records[0].find(0)->error, "exit 1");
  // One event: the task waits again as attempt 2 (the history outcome reports none).
  auto events = lastEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].state, State::kPending);
  EXPECT_EQ(events[0].attempt, 2);
  // The task has no final outcome: inspect::outcomes does not list it.
  auto found = inspect::outcomes(*coord_, layout_, {generatedId({batch_, 0})});
  ASSERT_TRUE(found);
  EXPECT_TRUE(found->empty());
}

}  // namespace
}  // namespace drover::tasks::v2

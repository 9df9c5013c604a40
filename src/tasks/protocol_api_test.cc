#include <gtest/gtest.h>

#include "tasks/inspect.h"
#include "tasks/protocol_test_fixture.h"

// The transitions a client or retention asks for: cancel, retry, expire, the waiting count, and
// the whole-tree reads. The task path (submit to commit): protocol_test.cc.

namespace drover::tasks::v2 {
namespace {

using coord::Code;

TEST_F(ProtocolTest, CancelWaitingRecordsEveryReasonInOneFencedMulti) {
  Builder s(layout_);
  s.submit(record(batch_, 4, {"root"}));
  apply(std::move(s));
  auto [state, pv] = pending(batch_);
  state.erase(1);
  state.erase(3);
  ResultRecord cancelled;
  cancelled.outcomes.push_back(
      Outcome{1, "", State::kCancelled, 0, "", 0, 800, "dependency root failed", nullptr});
  cancelled.outcomes.push_back(
      Outcome{3, "", State::kCancelled, 0, "", 0, 800, "dependency root failed", nullptr});
  // A deposed leader's multi writes nothing.
  Builder stale = Builder::fenced(layout_, 7);
  stale.cancelWaiting(PendingWrite{batch_, pv, state}, cancelled, 800);
  EXPECT_EQ(failing(std::move(stale), Code::kBadVersion).part, Part::kEpoch);
  // The pending state as read: someone moved a token since, so the leader re-reads.
  Builder moved = Builder::fenced(layout_, 0);
  moved.cancelWaiting(PendingWrite{batch_, pv + 1, state}, cancelled, 800);
  auto role = failing(std::move(moved), Code::kBadVersion);
  EXPECT_EQ(role.part, Part::kPending);
  EXPECT_EQ(role.key, batch_);
  EXPECT_EQ(pending(batch_).first.waiting().size(), 4u);
  Builder b = Builder::fenced(layout_, 0);
  b.cancelWaiting(PendingWrite{batch_, pv, state}, cancelled, 800);
  apply(std::move(b));
  EXPECT_EQ(pending(batch_).first.waiting().size(), 2u);
  auto recs = results(batch_);
  ASSERT_EQ(recs.size(), 1u);
  ASSERT_NE(recs[0].find(3), nullptr);
  EXPECT_EQ(recs[0].find(3)->state, State::kCancelled);
  EXPECT_EQ(recs[0].find(3)->error, "dependency root failed");
  auto events = lastEvents();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].state, State::kCancelled);
  EXPECT_EQ(events[1].id, generatedId({batch_, 3}));
}

TEST_F(ProtocolTest, CancelTakesTheTokenFromWhereverItIs) {
  submitAndAssign(3, 1, "c-1");
  // Waiting task 2: only the pending state changes.
  cancelOneWaiting(2, 700);
  EXPECT_EQ(pending(batch_).first.waitingAt(2), nullptr);

  // Held task 0: its chunk loses it (the chunk is deleted: it was the only task).
  auto [c, cv] = chunk("c-1");
  auto [state, pv] = pending(batch_);
  state.erase(0);
  Builder h(layout_);
  h.cancel(item(batch_, 0), PendingWrite{batch_, pv, state},
           ChunkWrite{"w1", "c-1", cv, c.without({{batch_, 0}})},
           Outcome{0, "", State::kCancelled, 1, "w1", 0, 710, "cancelled", nullptr});
  apply(std::move(h));
  EXPECT_FALSE(exists(layout_.chunk("w1", "c-1")));
  size_t cancelled = 0;
  for (const auto& r : results(batch_)) {
    for (const auto& o : r.outcomes) cancelled += o.state == State::kCancelled;
  }
  EXPECT_EQ(cancelled, 2u);
  EXPECT_EQ(lastEvents().at(0).state, State::kCancelled);
}

TEST_F(ProtocolTest, RetryReopensAFinishedTaskAndIsFencedByThePendingState) {
  submitAndAssign(2, 0, "c-1");
  cancelOneWaiting(1, 700);

  // Set at the version read: task 1 waits again; its re-open is its latest outcome.
  auto [now_state, now_v] = pending(batch_);
  PendingState after = now_state;
  after.wait(1, Waiting{1, 0, ""});
  const Outcome reopened{1, "", State::kCancelled, 0, "", 0, 800, "re-opened", nullptr};
  Builder r(layout_);
  r.retry(PendingWrite{batch_, now_v, after}, reopened, generatedId({batch_, 1}), 800);
  apply(std::move(r));
  EXPECT_TRUE(pending(batch_).first.waitingAt(1));
  auto events = lastEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].state, State::kPending);
  EXPECT_EQ(events[0].attempt, 1);
  size_t reopens = 0;
  for (const auto& rec : results(batch_)) {
    for (const auto& o : rec.outcomes) reopens += o.state == State::kPending;
  }
  EXPECT_EQ(reopens, 1u);  // recorded as pending whatever state the caller passed

  // A second retry from the same read: the pending state's version fences it.
  Builder twice(layout_);
  twice.retry(PendingWrite{batch_, now_v, after}, reopened, generatedId({batch_, 1}), 801);
  Role role = failing(std::move(twice), Code::kBadVersion);
  EXPECT_EQ(role.part, Part::kPending);
  EXPECT_EQ(role.key, batch_);

  // No pending state left: it is created; a rival create fails on it (NodeExists).
  Builder s(layout_);
  s.submit(record(other_, 1));
  apply(std::move(s));
  auto [os, ov] = pending(other_);
  ASSERT_TRUE(coord_->remove(layout_.pending(other_), ov).get());
  PendingState fresh;
  fresh.wait(0, Waiting{2, 0, "boom"});
  Builder create(layout_);
  create.retry(PendingWrite{other_, 0, fresh, true},
               Outcome{0, "", State::kFailed, 1, "w1", 0, 900, "re-opened", nullptr}, "x", 900);
  apply(std::move(create));
  EXPECT_EQ(pending(other_).first.waitingAt(0)->attempt, 2);
  EXPECT_EQ(lastEvents().at(0).id, "x");
  Builder rival(layout_);
  rival.retry(PendingWrite{other_, 0, fresh, true},
              Outcome{0, "", State::kFailed, 1, "w1", 0, 901, "re-opened", nullptr}, "x", 901);
  EXPECT_EQ(failing(std::move(rival), Code::kNodeExists).part, Part::kPending);

  // The batch record gone (retention): the result record's create names it.
  Builder late(layout_);
  const std::string ghost = makeBatchName(1'796'083'200'000, 9);
  late.retry(PendingWrite{ghost, 0, fresh, true},
             Outcome{0, "", State::kFailed, 1, "w1", 0, 902, "re-opened", nullptr}, "", 902);
  Role gone = failing(std::move(late), Code::kNoNode);
  EXPECT_EQ(gone.part, Part::kResult);
  EXPECT_EQ(gone.key, ghost);
}

TEST_F(ProtocolTest, ExpireDeletesABatchWholeOrNotAtAll) {
  Builder s(layout_);
  s.submit(record(batch_, 1, {"mine"}));
  apply(std::move(s));
  auto [state, pv] = pending(batch_);
  state.erase(0);
  Builder w(layout_);
  w.cancel(item(batch_, 0), PendingWrite{batch_, pv, state}, std::nullopt,
           Outcome{0, "mine", State::kCancelled, 0, "", 0, 9, "", nullptr});
  apply(std::move(w));
  auto children = coord_->children(layout_.batch(batch_), nullptr).get();
  ASSERT_TRUE(children);
  ASSERT_EQ(children->size(), 1u);
  const int32_t pv2 = pending(batch_).second;

  // A result record the listing did not see: the batch's delete fails, nothing is deleted.
  Builder blind(layout_);
  blind.expire(batch_, {}, pv2, {"mine"});
  Role role = failing(std::move(blind), Code::kNotEmpty);
  EXPECT_EQ(role.part, Part::kRetained);
  EXPECT_TRUE(exists(layout_.idEntry("mine")));

  Builder e(layout_);
  e.expire(batch_, *children, pv2, {"mine"});
  apply(std::move(e));
  EXPECT_FALSE(exists(layout_.batch(batch_)));
  EXPECT_FALSE(exists(layout_.pending(batch_)));
  EXPECT_FALSE(exists(layout_.idEntry("mine")));
}

// The leader's waiting count lives in /pending's own data: a fenced set that leaves the pending
// states below alone; a deposed leader's write fails on the epoch.
TEST_F(ProtocolTest, PublishWaitingSetsThePendingRootsDataFenced) {
  EXPECT_FALSE(decodeWaiting(coord_->get(layout_.pendingRoot(), nullptr).get()->data));
  auto epoch = coord_->set(layout_.epoch(), "leader", coord::kAnyVersion).get();
  ASSERT_TRUE(epoch);
  Builder b = Builder::fenced(layout_, epoch->version);
  b.publishWaiting(WaitingCount{42, 1234});
  apply(std::move(b));
  auto node = coord_->get(layout_.pendingRoot(), nullptr).get();
  ASSERT_TRUE(node);
  EXPECT_EQ(decodeWaiting(node->data), (WaitingCount{42, 1234}));
  EXPECT_FALSE(decodeWaiting("{\"waiting\":\"many\"}"));
  EXPECT_EQ(decodeWaiting(encode(WaitingCount{9, 1, 4, 3, 2})), (WaitingCount{9, 1, 4, 3, 2}));
  // A count written before delayed and held were added reads as none of each.
  EXPECT_EQ(decodeWaiting("{\"waiting\":5,\"at\":7}"), (WaitingCount{5, 7, 0, 0}));

  Builder stale = Builder::fenced(layout_, epoch->version - 1);
  stale.publishWaiting(WaitingCount{7, 5678});
  EXPECT_EQ(failing(std::move(stale), Code::kBadVersion).part, Part::kEpoch);
  EXPECT_EQ(decodeWaiting(coord_->get(layout_.pendingRoot(), nullptr).get()->data),
            (WaitingCount{42, 1234}));
  EXPECT_EQ(partName(Part::kWaiting), "waiting count");
}

// The whole-tree reads the tests and the benchmark check the nodes with: a task is unfinished
// while it waits or a chunk holds it, and has an outcome once a result record has one; client
// ids resolve through their id entries, and a later record's outcome wins.
TEST_F(ProtocolTest, InspectSeesWaitingHeldAndFinishedTasksByTheirIds) {
  Builder s(layout_);
  s.submit(record(batch_, 4, {"mine"}));
  apply(std::move(s));
  auto [state, version] = pending(batch_);
  Chunk held;
  for (uint32_t i = 0; i < 2; ++i) {
    state.hold(i, Held{"w1", "c-1"});
    held.items.push_back(item(batch_, i));
  }
  held.items[0].id = "mine";
  Builder a = Builder::fenced(layout_, 0);
  a.assign({PendingWrite{batch_, version, state}}, "w1", "c-1", held, 200);
  apply(std::move(a));

  auto left = inspect::unfinished(*coord_, layout_);
  ASSERT_TRUE(left);
  std::sort(left->begin(), left->end());
  std::vector<std::string> want = {generatedId({batch_, 1}), generatedId({batch_, 2}),
                                   generatedId({batch_, 3}), "mine"};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(*left, want);

  auto [c, cv] = chunk("c-1");
  ResultRecord first;
  first.outcomes.push_back(Outcome{0, "mine", State::kFailed, 1, "w1", 210, 220, "boom", nullptr});
  Builder b(layout_);
  b.commit(ChunkWrite{"w1", "c-1", cv, c.without({{batch_, 0}})}, {{batch_, first}}, {}, {}, 230);
  apply(std::move(b));
  std::vector<std::string> ids = {"mine", generatedId({batch_, 1}), "never-submitted"};
  auto found = inspect::outcomes(*coord_, layout_, ids);
  ASSERT_TRUE(found);
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ(found->at("mine").state, State::kFailed);
  EXPECT_EQ(found->at("mine").error, "boom");
  EXPECT_EQ(found->at("mine").submitted_at, batchTime(batch_));

  // A later record of the same index (a retry's outcome) wins over the earlier one.
  auto [c2, cv2] = chunk("c-1");
  ResultRecord second;
  second.outcomes.push_back(Outcome{0, "mine", State::kSucceeded, 2, "w1", 300, 310, "", nullptr});
  second.outcomes.push_back(Outcome{1, "", State::kSucceeded, 1, "w1", 300, 310, "", nullptr});
  Builder b2(layout_);
  b2.commit(ChunkWrite{"w1", "c-1", cv2, Chunk{}}, {{batch_, second}}, {}, {}, 320);
  apply(std::move(b2));
  found = inspect::outcomes(*coord_, layout_, ids);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->at("mine").state, State::kSucceeded);
  EXPECT_EQ(found->at("mine").attempts, 2);
  EXPECT_EQ(found->at(generatedId({batch_, 1})).state, State::kSucceeded);
  left = inspect::unfinished(*coord_, layout_);
  ASSERT_TRUE(left);
  EXPECT_EQ(left->size(), 2u);  // tasks 2 and 3 still wait
}

}  // namespace
}  // namespace drover::tasks::v2

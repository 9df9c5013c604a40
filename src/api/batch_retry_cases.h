#pragma once

// BatchStore::retry and task history (docs/ZNODES.md "Retry and history on batch records"), as
// cases of the BatchStoreSuite: included after api/batch_store_suite.h, so they run on the fake
// tree (unit) and on a real ZooKeeper (integration) alike.

#include "api/batch_store_suite.h"

namespace drover::api::testing {

// The worker putting a failed task back for another attempt: its chunk without the task, the
// pending state with it waiting at attempt + 1, and the attempt's end as a `pending` outcome.
inline void failAndRetry(coord::Coordination& c, const tasks::Layout& layout,
                         const std::string& worker, const std::string& chunk, const TaskRef& ref,
                         const std::string& error) {
  auto node = c.get(layout.chunk(worker, chunk), nullptr).get();
  ASSERT_TRUE(node);
  auto items = tasks::decodeChunk(node->data);
  const tasks::ChunkItem* item = items->find(ref);
  ASSERT_TRUE(item);
  auto pnode = c.get(layout.pending(ref.batch), nullptr).get();
  ASSERT_TRUE(pnode);
  auto state = tasks::decodePending(pnode->data);
  state->wait(ref.index, tasks::Waiting{item->attempt + 1, 0, error});
  tasks::Outcome o;
  o.index = ref.index;
  o.id = item->id;
  o.state = State::kPending;
  o.attempt = item->attempt;
  o.worker = worker;
  o.started_at = base::wallMillis();
  o.finished_at = o.started_at;
  o.error = error;
  tasks::ResultRecord record;
  record.outcomes.push_back(o);
  tasks::v2::Builder b(layout);
  b.commit({worker, chunk, node->stat.version, items->without({ref})}, {{ref.batch, record}},
           {tasks::v2::PendingWrite{ref.batch, pnode->stat.version, *state}}, {*item},
           base::wallMillis());
  auto r = c.multi(std::move(b).finish().ops).get();
  ASSERT_TRUE(r) << r.error().toString();
}

TEST_P(BatchStoreSuite, RetryReopensAFailedTaskWithItsHistory) {
  ASSERT_TRUE(store_->submitBatch({spec("r0"), spec("r1")}));
  const TaskRef r0 = refOf("r0");
  registerWorker("wk");
  // Attempt 1 fails and goes back (history: pending), attempt 2 fails for good.
  std::string chunk = assign({r0}, "wk");
  failAndRetry(*other_, layout_, "wk", chunk, r0, "exit 1");
  auto waiting = store_->get("r0");
  ASSERT_TRUE(waiting) << waiting.error().detail;
  EXPECT_EQ(waiting->state, State::kPending);
  ASSERT_EQ(waiting->history.size(), 1u);
  EXPECT_EQ(waiting->history[0].state, State::kPending);
  EXPECT_EQ(waiting->history[0].error, "exit 1");
  chunk = assign({r0}, "wk");
  ASSERT_TRUE(commit("wk", chunk, {r0}, State::kFailed));
  auto failed = store_->get("r0");
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->state, State::kFailed);
  EXPECT_EQ(failed->attempts, 2);
  ASSERT_EQ(failed->history.size(), 2u);
  EXPECT_EQ(failed->history[1].state, State::kFailed);
  // A dead letter, newest first.
  auto dead = store_->listNewest(State::kFailed, 10, std::nullopt);
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->tasks.size(), 1u);
  EXPECT_EQ(dead->tasks[0].spec.id, "r0");

  auto again = store_->retry("r0");
  ASSERT_TRUE(again) << again.error().detail;
  EXPECT_EQ(again->state, State::kPending);
  auto reopened = store_->get("r0");
  ASSERT_TRUE(reopened);
  EXPECT_EQ(reopened->state, State::kPending);
  EXPECT_EQ(reopened->attempts, 2);  // the last that ran; the next runs as 3
  ASSERT_EQ(reopened->history.size(), 3u);
  EXPECT_EQ(reopened->history[2].state, State::kPending);
  auto node = other_->get(layout_.pending(r0.batch), nullptr).get();
  ASSERT_TRUE(node);
  EXPECT_EQ(tasks::decodePending(node->data)->waitingAt(r0.index)->attempt, 3);
  // No longer a dead letter; counted as waiting once, not also as failed.
  dead = store_->listNewest(State::kFailed, 10, std::nullopt);
  ASSERT_TRUE(dead);
  EXPECT_TRUE(dead->tasks.empty());
  auto counts = store_->cluster();
  ASSERT_TRUE(counts);
  EXPECT_EQ(counts->counts[State::kFailed], 0u);
  EXPECT_EQ(counts->counts[State::kPending], 2u);

  // Attempt 3 succeeds: four entries, in order.
  chunk = assign({r0}, "wk");
  ASSERT_TRUE(commit("wk", chunk, {r0}));
  auto done = store_->get("r0");
  ASSERT_TRUE(done);
  EXPECT_EQ(done->state, State::kSucceeded);
  EXPECT_EQ(done->attempts, 3);
  ASSERT_EQ(done->history.size(), 4u);
  std::vector<int> attempts;
  for (const auto& h : done->history) attempts.push_back(h.attempt);
  EXPECT_EQ(attempts, (std::vector<int>{1, 2, 2, 3}));
  EXPECT_EQ(done->history[3].state, State::kSucceeded);
}

TEST_P(BatchStoreSuite, RetryOfATaskNotFailedOrCancelledIs409AndWritesNothing) {
  ASSERT_TRUE(store_->submitBatch({spec("n0"), spec("n1")}));
  registerWorker("wk");
  const std::string chunk = assign({refOf("n1")}, "wk");
  ASSERT_TRUE(commit("wk", chunk, {refOf("n1")}));
  const int multis = counting_->multis;
  auto waiting = store_->retry("n0");
  ASSERT_FALSE(waiting);
  EXPECT_EQ(waiting.error().failure, Failure::kConflict);
  EXPECT_NE(waiting.error().detail.find("pending"), std::string::npos) << waiting.error().detail;
  auto succeeded = store_->retry("n1");
  ASSERT_FALSE(succeeded);
  EXPECT_EQ(succeeded.error().failure, Failure::kConflict);
  EXPECT_NE(succeeded.error().detail.find("succeeded"), std::string::npos);
  EXPECT_EQ(counting_->multis, multis);
  EXPECT_EQ(store_->retry("nope").error().failure, Failure::kNotFound);
  EXPECT_EQ(store_->retry("a/b").error().failure, Failure::kBadRequest);
}

TEST_P(BatchStoreSuite, RetryAfterThePendingStateWasDeletedCreatesIt) {
  ASSERT_TRUE(store_->submit(spec("gone")));
  ASSERT_TRUE(store_->cancel("gone"));
  const TaskRef ref = refOf("gone");
  // The leader's sweep: an empty pending state is deleted.
  auto node = other_->get(layout_.pending(ref.batch), nullptr).get();
  ASSERT_TRUE(node);
  ASSERT_TRUE(tasks::decodePending(node->data)->empty());
  ASSERT_TRUE(other_->remove(layout_.pending(ref.batch), node->stat.version).get());
  auto r = store_->retry("gone");
  ASSERT_TRUE(r) << r.error().detail;
  auto after = other_->get(layout_.pending(ref.batch), nullptr).get();
  ASSERT_TRUE(after);
  auto state = tasks::decodePending(after->data);  // kept: w points into it
  ASSERT_TRUE(state);
  const tasks::Waiting* w = state->waitingAt(ref.index);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->attempt, 1);  // cancelled before it ever ran
  auto got = store_->get("gone");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->state, State::kPending);
  ASSERT_EQ(got->history.size(), 2u);
  EXPECT_EQ(got->history[0].state, State::kCancelled);
}

TEST_P(BatchStoreSuite, ConcurrentRetriesOneWinsTheOtherIs409) {
  ASSERT_TRUE(store_->submit(spec("twice")));
  ASSERT_TRUE(store_->cancel("twice"));
  // The second store's retry lands just before the first one's multi is sent.
  BatchStore rival(*other_, layout_, options_);
  StoreResult<tasks::TaskStatus> theirs = problem(Failure::kInternal, "not run");
  counting_->before_multi = [&] { theirs = rival.retry("twice"); };
  auto ours = store_->retry("twice");
  ASSERT_TRUE(theirs) << theirs.error().detail;
  ASSERT_FALSE(ours);
  EXPECT_EQ(ours.error().failure, Failure::kConflict);
  const TaskRef ref = refOf("twice");
  auto node = other_->get(layout_.pending(ref.batch), nullptr).get();
  ASSERT_TRUE(node);
  EXPECT_EQ(tasks::decodePending(node->data)->waiting().size(), 1u);
  auto got = store_->get("twice");
  ASSERT_TRUE(got);
  ASSERT_EQ(got->history.size(), 2u);  // the cancel and one re-open
}

}  // namespace drover::api::testing

#include "tasks/protocol.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>

#include "coord/fake/fake_coordination.h"
#include "coord/paths.h"
#include "tasks/inspect.h"

namespace drover::tasks::v2 {
namespace {

using coord::Code;

// Each v2 transition applied to a fake tree: where the tokens are afterwards, and which record
// its decoder names when one of its ops fails.
class ProtocolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_shared<coord::FakeServer>();
    coord_ = std::make_unique<coord::FakeCoordination>(server_);
    for (const auto& d : layout_.directoriesV2()) ASSERT_TRUE(coord::ensurePath(*coord_, d));
    for (const auto& b : {batch_, other_}) {
      ASSERT_TRUE(coord::ensurePath(*coord_, layout_.batchBucket(b.substr(0, 7))));
      ASSERT_TRUE(coord::ensurePath(*coord_, layout_.pendingBucket(b.substr(0, 7))));
    }
    ASSERT_TRUE(coord::ensurePath(*coord_, layout_.assignmentsOf("w1")));
    ASSERT_TRUE(coord_->create({layout_.epoch(), "", coord::CreateMode::kPersistent, {}}).get());
  }

  BatchRecord record(const std::string& name, size_t n, std::vector<std::string> client = {}) {
    BatchRecord b{name, 100, {}};
    for (uint32_t i = 0; i < n; ++i) {
      TaskSpec s;
      s.id = i < client.size() ? client[i] : generatedId({name, i});
      s.type = "noop";
      b.tasks.push_back(s);
    }
    return b;
  }

  coord::Result<std::vector<coord::OpResult>> run(const Multi& m) {
    return coord_->multi(m.ops).get();
  }
  void apply(Builder b) {
    auto m = std::move(b).finish();
    auto r = run(m);
    std::string paths;
    for (const auto& op : m.ops)
      paths += std::visit([](const auto& o) { return o.path; }, op) + " ";
    ASSERT_TRUE(r) << r.error().toString() << " " << paths;
  }
  // Runs `b`, expects it to fail, returns the decoded role.
  Role failing(Builder b, Code code) {
    auto m = std::move(b).finish();
    auto r = run(m);
    EXPECT_FALSE(r);
    if (r) return {};
    EXPECT_EQ(r.error().code(), code) << r.error().toString();
    auto role = m.decoder.failed(r.error());
    EXPECT_TRUE(role);
    return role.value_or(Role{});
  }

  std::pair<PendingState, int32_t> pending(const std::string& batch) {
    auto r = coord_->get(layout_.pending(batch), nullptr).get();
    if (!r) return {PendingState{}, -1};
    return {decodePending(r->data).value_or(PendingState{}), r->stat.version};
  }
  std::pair<Chunk, int32_t> chunk(const std::string& name) {
    auto r = coord_->get(layout_.chunk("w1", name), nullptr).get();
    if (!r) return {Chunk{}, -1};
    return {decodeChunk(r->data).value_or(Chunk{}), r->stat.version};
  }
  std::vector<ResultRecord> results(const std::string& batch) {
    std::vector<ResultRecord> out;
    auto names = coord_->children(layout_.batch(batch), nullptr).get();
    if (!names) return out;
    for (const auto& n : *names) {
      auto r = coord_->get(layout_.batch(batch) + "/" + n, nullptr).get();
      if (r) out.push_back(decodeResults(r->data).value_or(ResultRecord{}));
    }
    return out;
  }
  std::vector<TaskEvent> lastEvents() {
    auto names = coord_->children(layout_.events(), nullptr).get();
    if (!names || names->empty()) return {};
    // "e-" and "n-" records share one sequence: the last is the highest number.
    std::sort(names->begin(), names->end(), coord::bySequence);
    auto r = coord_->get(layout_.events() + "/" + names->back(), nullptr).get();
    std::vector<TaskEvent> out;
    for (const auto& g : Json::parse(r->data)) {
      for (auto& e : eventGroupFromJson(g)->expand()) out.push_back(e);
    }
    return out;
  }
  bool exists(const std::string& path) {
    auto r = coord_->exists(path, nullptr).get();
    return r && r->has_value();
  }

  ChunkItem item(const std::string& batch, uint32_t i, int attempt = 1) {
    return ChunkItem{{batch, i}, generatedId({batch, i}), attempt, 100, "", std::nullopt};
  }

  // Submits `batch_` (n tasks) and assigns indices [0, k) to w1 as chunk `c`.
  void submitAndAssign(size_t n, uint32_t k, const std::string& c) {
    Builder s(layout_);
    s.submit(record(batch_, n));
    apply(std::move(s));
    auto [state, version] = pending(batch_);
    Chunk chunk;
    for (uint32_t i = 0; i < k; ++i) {
      state.hold(i, Held{"w1", c});
      chunk.items.push_back(item(batch_, i));
    }
    Builder a = Builder::fenced(layout_, 0);
    a.assign({PendingWrite{batch_, version, state}}, "w1", c, chunk, 200);
    apply(std::move(a));
  }

  Layout layout_{"/drover"};
  std::string batch_ = makeBatchName(1'796'083'200'000, 1);
  std::string other_ = makeBatchName(1'796'083'200'000, 2);
  std::shared_ptr<coord::FakeServer> server_;
  std::unique_ptr<coord::FakeCoordination> coord_;
};

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
  auto [state, pv] = pending(batch_);
  state.erase(2);
  Builder w(layout_);
  w.cancel(item(batch_, 2), PendingWrite{batch_, pv, state}, std::nullopt,
           Outcome{2, "", State::kCancelled, 0, "", 0, 700, "cancelled", nullptr});
  apply(std::move(w));
  EXPECT_EQ(pending(batch_).first.waitingAt(2), nullptr);

  // Held task 0: its chunk loses it (the chunk is deleted: it was the only task).
  auto [c, cv] = chunk("c-1");
  auto [state2, pv2] = pending(batch_);
  state2.erase(0);
  Builder h(layout_);
  h.cancel(item(batch_, 0), PendingWrite{batch_, pv2, state2},
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

TEST_F(ProtocolTest, RetryReopensAFinishedTaskAndIsFencedByThePendingState) {
  submitAndAssign(2, 0, "c-1");
  auto [state, pv] = pending(batch_);
  state.erase(1);
  Builder w(layout_);
  w.cancel(item(batch_, 1), PendingWrite{batch_, pv, state}, std::nullopt,
           Outcome{1, "", State::kCancelled, 0, "", 0, 700, "cancelled", nullptr});
  apply(std::move(w));

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

}  // namespace
}  // namespace drover::tasks::v2

namespace drover::tasks::v2 {
namespace {

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

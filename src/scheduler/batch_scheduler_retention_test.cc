// The leader's housekeeping on the fake tree (docs/ZNODES.md "The leader under protocol v2"):
// the sweep of stale pointers and ended pending states, and retention by count and by age.
#include "scheduler/batch_scheduler_fixture.h"

namespace drover::scheduler {
namespace {
// retention_count on v2: once finished batches hold more tasks than the setting, the oldest
// finished batches go (whole), however young; a batch with a task still waiting stays.
TEST_F(BatchSchedulerTest, RetentionCountExpiresTheOldestFinishedBatchesFirst) {
  options_.retention_count = 3;
  addWorker("w1", 16, 0);
  const int64_t t = wall() - 10 * 60 * 1000;  // minutes old: far younger than retention_age
  std::string open_oldest = submit({spec(5, 3, "nobody"), spec()}, 0, t);
  std::vector<std::string> done;
  for (int i = 0; i < 4; ++i) done.push_back(submit({spec(), spec()}, 0, t + (i + 1) * 1000));
  start();
  ASSERT_TRUE(settle([&] { return held("w1") == 9; }));
  commitAll("w1");
  quiesce();
  scheduler_->sweepNow();  // drops the pending states of the finished batches
  ASSERT_TRUE(settle([&] {
    for (const auto& b : done) {
      if (pendingOf(b)) return false;
    }
    return true;
  }));
  quiesce();
  scheduler_->sweepNow();
  // 8 finished tasks, 3 kept at most: the three oldest finished batches go, the newest stays.
  ASSERT_TRUE(settle([&] { return !server_->peek(layout_.batch(done[2])); }));
  quiesce();
  EXPECT_FALSE(server_->peek(layout_.batch(done[0])));
  EXPECT_FALSE(server_->peek(layout_.batch(done[1])));
  EXPECT_TRUE(server_->peek(layout_.batch(done[3])));
  EXPECT_EQ(outcomesOf(done[3]).size(), 2u);
  EXPECT_TRUE(server_->peek(layout_.batch(open_oldest)));  // a task still waits
  EXPECT_EQ(scheduler_->snapshot().statuses_deleted, 3u);
  // Nothing more goes on later passes: 2 finished tasks are within the count.
  scheduler_->sweepNow();
  quiesce();
  EXPECT_TRUE(server_->peek(layout_.batch(done[3])));
  EXPECT_EQ(scheduler_->snapshot().statuses_deleted, 3u);
}

// The leader holds a batch's record while a task of it waits or is held, and not after: retention
// reads a finished batch's record (for its client-chosen ids) right before deleting it, and
// keeping that copy grew the leader by every expired batch (1M tasks: ~110 MiB).
TEST_F(BatchSchedulerTest, AFinishedOrExpiredBatchsRecordIsNotKept) {
  options_.retention_count = 2;
  addWorker("w1", 16, 0);
  const int64_t t = wall() - 10 * 60 * 1000;
  std::vector<std::string> done;
  for (int i = 0; i < 3; ++i) {
    const std::string n = std::to_string(i);
    done.push_back(
        submit({spec(5, 3, "default", "a" + n), spec(5, 3, "default", "b" + n)}, 0, t + i * 1000));
  }
  start();
  ASSERT_TRUE(settle([&] { return held("w1") == 6; }));
  EXPECT_EQ(scheduler_->snapshot().batch_records, 3u);
  commitAll("w1");
  quiesce();
  scheduler_->sweepNow();  // drops the finished batches' pending states
  ASSERT_TRUE(settle([&] {
    for (const auto& b : done) {
      if (pendingOf(b)) return false;
    }
    return true;
  }));
  quiesce();
  EXPECT_EQ(scheduler_->snapshot().batch_records, 0u);
  scheduler_->sweepNow();  // 6 finished tasks, 2 kept at most: the two oldest batches go
  ASSERT_TRUE(settle([&] { return !server_->peek(layout_.batch(done[1])); }));
  quiesce();
  EXPECT_FALSE(server_->peek(layout_.idEntry("a0")));  // named by the record, read to delete it
  EXPECT_TRUE(server_->peek(layout_.batch(done[2])));
  EXPECT_EQ(scheduler_->snapshot().batch_records, 0u);
}

TEST_F(BatchSchedulerTest, SweepsStalePointersThenDeletesTheEmptyPendingState) {
  addWorker("w1", 2, 0);
  std::string b = submit({spec(), spec(), spec()});
  start();
  ASSERT_TRUE(settle([&] { return held("w1") == 2; }));
  auto c = chunks("w1")[0];
  uint32_t done_index = c.chunk.items[0].ref.index;
  ASSERT_TRUE(actors::commit(admin_, layout_, "w1", c, {c.chunk.items[0].ref}, wall()));
  ASSERT_TRUE(settle([&] { return held("w1") == 2 && items("w1").size() == 2; }));
  quiesce();
  EXPECT_TRUE(pendingOf(b)->heldAt(done_index));  // the pointer outlives the commit
  scheduler_->sweepNow();
  ASSERT_TRUE(settle([&] { return !pendingOf(b)->heldAt(done_index); }));
  EXPECT_EQ(pendingOf(b)->held().size(), 2u);  // the live pointers stay
  commitAll("w1");
  quiesce();
  scheduler_->sweepNow();
  EXPECT_TRUE(settle([&] { return !pendingOf(b); }));
  EXPECT_EQ(outcomesOf(b).size(), 3u);
}

// Many small batches end together (a flood of single submits): the sweep deletes their pending
// states in one fenced multi, not one each. A batch written by someone else since the leader read
// it fails that multi on its own op only: the rest go again at once without it.
TEST_F(BatchSchedulerTest, OneSweepDeletesManyEndedPendingStatesInOneMulti) {
  addWorker("w1", 8, 0);
  std::vector<std::string> batches;
  for (int i = 0; i < 6; ++i) batches.push_back(submit({spec()}));
  const std::string changed = batches[2];
  std::atomic<int> sweeps{0};
  via_ = std::make_unique<HookedCoordination>(leader_, [&](const std::vector<coord::Op>& ops) {
    bool sweep = false;
    for (const auto& op : ops) {
      const auto* del = std::get_if<coord::DeleteOp>(&op);
      if (del && del->path.starts_with(layout_.pendingRoot() + "/")) sweep = true;
    }
    if (!sweep || sweeps++ > 0) return;
    // Before the first sweep multi lands, another writer rewrites one of its pending states.
    auto node = server_->peek(layout_.pending(changed));
    ASSERT_TRUE(node);
    ASSERT_TRUE(admin_.set(layout_.pending(changed), node->data, coord::kAnyVersion).get());
  });
  start(via_.get());
  ASSERT_TRUE(settle([&] { return held("w1") == 6; }));
  commitAll("w1");
  ASSERT_TRUE(settle([&] { return scheduler_->snapshot().workers.at(0).assigned == 0; }));
  quiesce();
  scheduler_->sweepNow();
  ASSERT_TRUE(settle([&] {
    for (const auto& b : batches) {
      if (b != changed && pendingOf(b)) return false;
    }
    return true;
  }));
  quiesce();
  EXPECT_EQ(sweeps.load(), 2);  // the one that met the change, then the other five together
  EXPECT_TRUE(pendingOf(changed));
  scheduler_->sweepNow();  // read again since, it goes on the next pass
  ASSERT_TRUE(settle([&] { return !pendingOf(changed); }));
  EXPECT_EQ(sweeps.load(), 3);
}

TEST_F(BatchSchedulerTest, ExpiresOnlyFinishedOldBatchesAndNeverHalf) {
  options_.retention_age = std::chrono::hours(24);
  addWorker("w1", 4, 0);
  const int64_t old_at = wall() - 48 * 3600 * 1000;
  std::string done_old = submit({spec(5, 3, "default", "client-x"), spec()}, 0, old_at);
  std::string open_old = submit({spec(5, 3, "nobody")}, 0, old_at + 3600 * 1000);
  std::string done_new = submit({spec()});
  bool raced = false;
  // The first expiry of done_old meets a result record written after its listing.
  via_ = std::make_unique<HookedCoordination>(leader_, [&](const std::vector<coord::Op>& ops) {
    for (const auto& op : ops) {
      const auto* del = std::get_if<coord::DeleteOp>(&op);
      if (del && del->path == layout_.batch(done_old) && !raced) {
        raced = true;
        ASSERT_TRUE(admin_
                        .create(CreateOp{layout_.batch(done_old) + "/r-9-9-",
                                         tasks::encode(tasks::ResultRecord{}),
                                         CreateMode::kPersistentSequential,
                                         {}})
                        .get());
      }
    }
  });
  start(via_.get());
  ASSERT_TRUE(settle([&] { return held("w1") == 3; }));
  commitAll("w1");
  quiesce();
  scheduler_->sweepNow();
  ASSERT_TRUE(settle([&] { return !pendingOf(done_old) && !pendingOf(done_new); }));
  quiesce();
  if (!raced) scheduler_->sweepNow();  // the first pass may have run before the deletes
  ASSERT_TRUE(settle([&] { return raced; }));
  quiesce();
  // Refused as a whole: the record, its results and its id entry are all still there.
  ASSERT_TRUE(server_->peek(layout_.batch(done_old)));
  EXPECT_EQ(admin_.children(layout_.batch(done_old), nullptr).get()->size(), 2u);
  EXPECT_TRUE(server_->peek(layout_.idEntry("client-x")));
  scheduler_->sweepNow();
  ASSERT_TRUE(settle([&] { return !server_->peek(layout_.batch(done_old)); }));
  EXPECT_FALSE(server_->peek(layout_.idEntry("client-x")));
  quiesce();
  EXPECT_TRUE(server_->peek(layout_.batch(open_old)));  // tasks still waiting
  EXPECT_TRUE(pendingOf(open_old));
  EXPECT_TRUE(server_->peek(layout_.batch(done_new)));  // finished, but young
  EXPECT_EQ(outcomesOf(done_new).size(), 1u);
  // The old bucket of done_old empties and goes on a later pass (open_old's stays).
  std::string old_bucket = done_old.substr(0, tasks::Layout::kBatchBucketDigits);
  if (old_bucket != open_old.substr(0, tasks::Layout::kBatchBucketDigits)) {
    scheduler_->sweepNow();
    EXPECT_TRUE(settle([&] { return !server_->peek(layout_.batchBucket(old_bucket)); }));
  }
}

}  // namespace
}  // namespace drover::scheduler

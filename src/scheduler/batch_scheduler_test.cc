#include "scheduler/batch_scheduler_fixture.h"

namespace drover::scheduler {
namespace {

TEST_F(BatchSchedulerTest, AssignsChunksToCapableWorkersOnly) {
  addWorker("cpu", 8, 0, {"default"});
  addWorker("gpu", 8, 0, {"gpu"});
  std::string b =
      submit({spec(), spec(), spec(), spec(5, 3, "gpu"), spec(5, 3, "gpu"), spec(5, 3, "nobody")});
  start();
  ASSERT_TRUE(settle([&] { return held("cpu") == 3 && held("gpu") == 2; }));
  quiesce();
  EXPECT_EQ(held("cpu"), 3u);
  EXPECT_EQ(held("gpu"), 2u);
  for (const auto& item : items("gpu")) EXPECT_EQ(item.spec->queue, "gpu");  // inline specs
  for (const auto& item : items("cpu")) EXPECT_EQ(item.spec->queue, "default");
  // One chunk per worker, named by this leadership, and the pending state points at them.
  auto cpu = chunks("cpu");
  ASSERT_EQ(cpu.size(), 1u);
  EXPECT_TRUE(cpu[0].name.starts_with(tasks::makeChunkName(epoch_, 0).substr(0, 13)));
  auto pending = pendingOf(b);
  ASSERT_TRUE(pending);
  EXPECT_EQ(pending->waiting().size(), 1u);  // the "nobody" task
  ASSERT_EQ(pending->held().size(), 5u);
  for (const auto& item : cpu[0].chunk.items) {
    EXPECT_EQ(*pending->heldAt(item.ref.index), (tasks::Held{"cpu", cpu[0].name}));
  }
  EXPECT_EQ(scheduler_->snapshot().assigned_total, 5u);
  EXPECT_TRUE(fenced().empty());
}

TEST_F(BatchSchedulerTest, NeverOverfillsSlotsPlusPrefetch) {
  addWorker("w1", 2, 1);
  addWorker("w2", 1, 0);
  std::vector<tasks::TaskSpec> specs(12, spec());
  std::string b = submit(specs);
  start();
  ASSERT_TRUE(settle([&] { return held("w1") == 3 && held("w2") == 1; }));
  size_t done = 0;
  while (done < 12) {
    quiesce();
    ASSERT_LE(held("w1"), 3u);
    ASSERT_LE(held("w2"), 1u);
    size_t before = done;
    done += commitAll("w1") + commitAll("w2");
    ASSERT_GT(done, before);
    ASSERT_TRUE(settle([&] { return held("w1") + held("w2") == std::min<size_t>(4, 12 - done); }));
  }
  EXPECT_EQ(outcomesOf(b).size(), 12u);
}

TEST_F(BatchSchedulerTest, AssignsInPriorityOrderAcrossBatches) {
  addWorker("w1", 1, 0);
  submit({spec(1), spec(5), spec(9)});
  submit({spec(7), spec(3)});
  start();
  std::vector<int> order;
  for (int n = 0; n < 5; ++n) {
    ASSERT_TRUE(settle([&] { return held("w1") == 1; })) << n;
    quiesce();
    auto it = items("w1");
    ASSERT_EQ(it.size(), 1u);
    order.push_back(it[0].spec->priority);
    commitAll("w1");
  }
  EXPECT_EQ(order, (std::vector<int>{9, 7, 5, 3, 1}));
}

TEST_F(BatchSchedulerTest, HonoursNotBefore) {
  addWorker("w1", 4, 0);
  submit({spec(), spec()}, wall() + 10'000);
  start();
  quiesce();
  EXPECT_EQ(held("w1"), 0u);
  EXPECT_TRUE(settle([&] { return scheduler_->snapshot().delayed == 2; }));
  exec_.advance(5s);
  quiesce();
  EXPECT_EQ(held("w1"), 0u);
  exec_.advance(6s);
  EXPECT_TRUE(settle([&] { return held("w1") == 2; }));
}

TEST_F(BatchSchedulerTest, RequeuesADeadWorkersChunksAndFailsTasksOutOfAttempts) {
  addWorker("w1", 4, 0);
  std::string b = submit({spec(5, 2), spec(5, 1)});
  start();
  ASSERT_TRUE(settle([&] { return held("w1") == 2; }));
  removeWorker("w1");
  addWorker("w2", 4, 0);
  ASSERT_TRUE(settle([&] { return held("w2") == 1; }));
  auto moved = items("w2");
  EXPECT_EQ(moved[0].ref.index, 0u);
  EXPECT_EQ(moved[0].attempt, 2);
  EXPECT_EQ(moved[0].error, "worker w1 was lost");
  // Task 1 failed for good; task 0's lost attempt is history (pending), in the same record.
  auto outcomes = outcomesOf(b);
  ASSERT_EQ(outcomes.size(), 2u);
  std::sort(outcomes.begin(), outcomes.end(),
            [](const auto& x, const auto& y) { return x.index < y.index; });
  EXPECT_EQ(outcomes[0].state, State::kPending);
  EXPECT_EQ(outcomes[0].attempt, 1);
  EXPECT_EQ(outcomes[0].error, "worker w1 was lost");
  EXPECT_EQ(outcomes[1].index, 1u);
  EXPECT_EQ(outcomes[1].state, State::kFailed);
  EXPECT_EQ(outcomes[1].worker, "w1");
  EXPECT_TRUE(settle([&] { return !server_->peek(layout_.assignmentsOf("w1")); }));
  auto stats = scheduler_->snapshot();
  EXPECT_EQ(stats.requeued_total, 1u);
  EXPECT_EQ(stats.failed_total, 1u);
}

TEST_F(BatchSchedulerTest, DeposedLeaderWritesNothing) {
  addWorker("w1", 4, 0);
  std::string b = submit({spec(), spec()});
  // Another node won an election since: /epoch moved past this leader's token.
  ASSERT_TRUE(admin_.set(layout_.epoch(), "leader-2", coord::kAnyVersion).get());
  auto before = server_->dump();
  start();
  ASSERT_TRUE(settle([&] { return !fenced().empty(); }));
  EXPECT_EQ(fenced()[0], "epoch moved");
  quiesce();
  EXPECT_EQ(server_->dump(), before);  // no chunk, no pending change, no event
  EXPECT_TRUE(scheduler_->snapshot().fenced);
}

TEST_F(BatchSchedulerTest, RetriesAfterAPendingStateChangedUnderIt) {
  addWorker("w1", 4, 0);
  std::string b = submit({spec(), spec()});
  std::atomic<int> fired{0};
  // A worker's retry lands on the batch between the leader's read and its assign multi.
  via_ = std::make_unique<HookedCoordination>(leader_, [&](const std::vector<coord::Op>& ops) {
    for (const auto& op : ops) {
      const auto* set = std::get_if<coord::SetOp>(&op);
      if (set && set->path == layout_.pending(b) && fired.fetch_add(1) == 0) {
        auto node = server_->peek(set->path);
        ASSERT_TRUE(admin_.set(set->path, node->data, node->stat.version).get());
      }
    }
  });
  start(via_.get());
  // The retry waits out a backoff on the executor's clock.
  ASSERT_TRUE(settle([&] {
    exec_.advance(5ms);
    return held("w1") == 2;
  }));
  EXPECT_GE(fired.load(), 2);  // the failed multi and its retry
  EXPECT_EQ(scheduler_->snapshot().batch_failures, 1u);
  EXPECT_EQ(pendingOf(b)->held().size(), 2u);
}

TEST_F(BatchSchedulerTest, FreeSlotsAnywhereComeBeforePrefetch) {
  // Issue 9, case 1: A has 2 slots + prefetch 16, B 2 slots and no prefetch; six tasks.
  addWorker("a", 2, 16);
  addWorker("b", 2, 0);
  std::vector<tasks::TaskSpec> specs(6, spec());
  submit(specs);
  start();
  ASSERT_TRUE(settle([&] { return held("a") + held("b") == 6; }));
  EXPECT_EQ(held("b"), 2u);  // B got work while A holds prefetch
  EXPECT_EQ(held("a"), 4u);
}

TEST_F(BatchSchedulerTest, APrefetchQueueIsToppedUpOnceHalfOfItIsFree) {
  // The refill watermark: W has 2 slots and a prefetch queue of 16; 40 tasks wait.
  addWorker("w", 2, 16);
  submit(std::vector<tasks::TaskSpec>(40, spec()));
  start();
  ASSERT_TRUE(settle([&] { return held("w") == 18; }));
  auto leaderSees = [&](int n) {
    auto s = scheduler_->snapshot();
    return s.workers.size() == 1 && s.workers[0].assigned == n;
  };
  auto commitFirst = [&](size_t n) {
    auto c = chunks("w").front();
    std::vector<tasks::TaskRef> refs = actors::refsOf(c.chunk);
    refs.resize(n);
    ASSERT_TRUE(actors::commit(admin_, layout_, "w", c, refs, wall()));
  };
  // Four end: a quarter of the queue is free, and nothing is added while the leader knows it.
  commitFirst(4);
  ASSERT_TRUE(settle([&] { return leaderSees(14); }));
  quiesce();
  EXPECT_EQ(held("w"), 14u);
  EXPECT_EQ(chunks("w").size(), 1u);
  // Four more: half of it is free, and it is filled in one chunk.
  commitFirst(4);
  ASSERT_TRUE(settle([&] { return held("w") == 18; }));
  EXPECT_EQ(chunks("w").size(), 2u);
}

TEST_F(BatchSchedulerTest, HigherPriorityTaskDoesNotWaitBehindUnstartedPrefetch) {
  // Issue 9, case 2: priority-1 long tasks fill A's slots and prefetch; a priority-9 task comes.
  addWorker("a", 2, 16);
  std::vector<tasks::TaskSpec> low(10, spec(1));
  submit(low);
  start();
  ASSERT_TRUE(settle([&] { return held("a") == 10; }));
  auto first = items("a");
  setRunning("a", 2, 16, {first[0].id, first[1].id});
  quiesce();
  std::string urgent = submit({spec(9)});
  ASSERT_TRUE(settle([&] {
    auto it = items("a");
    return it.size() == 11 && scheduler_->snapshot().reclaimed_total == 8;
  }));
  // In assignment order, what A starts next when a slot frees is the priority-9 task.
  auto now = items("a");
  std::vector<tasks::ChunkItem> unstarted;
  for (const auto& item : now) {
    if (item.id != first[0].id && item.id != first[1].id) unstarted.push_back(item);
  }
  ASSERT_EQ(unstarted.size(), 9u);
  EXPECT_EQ(unstarted[0].ref.batch, urgent);
  EXPECT_EQ(unstarted[0].spec->priority, 9);
  // The reclaimed tasks kept their attempt.
  for (size_t i = 1; i < unstarted.size(); ++i) EXPECT_EQ(unstarted[i].attempt, 1);
}

// Queue max_running on v2: held (assigned, prefetched or running) tasks of the queue, across
// workers, never pass the limit; other queues are not held up; a new leader learns what is held
// from the chunks before it assigns any more of a limited queue.
TEST_F(BatchSchedulerTest, QueueLimitHoldsAcrossWorkersWithPrefetch) {
  ASSERT_TRUE(coord::ensurePath(admin_, layout_.queues()));
  ASSERT_TRUE(admin_
                  .create(CreateOp{layout_.queue("etl"),
                                   toJson(QueueSettings{false, 2}).dump(),
                                   CreateMode::kPersistent,
                                   {}})
                  .get());
  addWorker("w1", 2, 4, {"default", "etl"});
  addWorker("w2", 2, 4, {"default", "etl"});
  std::string b = submit(std::vector<tasks::TaskSpec>(9, spec(5, 3, "etl")));
  submit(std::vector<tasks::TaskSpec>(3, spec()));
  start();
  auto etl = [&] {
    size_t n = 0;
    for (const auto& w : {"w1", "w2"}) {
      for (const auto& item : items(w)) n += item.spec->queue == "etl";
    }
    return n;
  };
  ASSERT_TRUE(settle([&] { return etl() == 2 && held("w1") + held("w2") == 5; }));
  size_t done = 0;
  bool restarted = false;
  while (done < 9) {
    quiesce();
    ASSERT_LE(etl(), 2u);
    if (!restarted && done >= 4) {  // a new leader: it must learn the held chunks first
      restarted = true;
      scheduler_->stop();
      scheduler_.reset();
      auto stat = admin_.set(layout_.epoch(), "leader-2", coord::kAnyVersion).get();
      ASSERT_TRUE(stat);
      epoch_ = stat->version;
      start();
      quiesce();
      ASSERT_LE(etl(), 2u);
    }
    // Commit one etl task at a time, from either worker.
    for (const auto& w : {"w2", "w1"}) {
      bool one = false;
      for (const auto& c : chunks(w)) {
        for (const auto& item : c.chunk.items) {
          if (item.spec->queue != "etl") continue;
          ASSERT_TRUE(actors::commit(admin_, layout_, w, c, {item.ref}, wall()));
          one = true;
          break;
        }
        if (one) break;
      }
      if (one) {
        ++done;
        break;
      }
    }
    ASSERT_TRUE(settle([&] { return etl() == std::min<size_t>(2, 9 - done); })) << done;
  }
  quiesce();
  EXPECT_EQ(etl(), 0u);
  EXPECT_EQ(outcomesOf(b).size(), 9u);
  EXPECT_TRUE(fenced().empty());
}

// Holds the replies to reads of pending states while armed (a read of the leader still out),
// and lets them through on release().
class HoldingPendingReads : public coord::ForwardingCoordination {
 public:
  HoldingPendingReads(coord::Coordination& inner, std::string prefix)
      : ForwardingCoordination(inner), prefix_(std::move(prefix)) {}
  coord::Future<coord::Node> get(const std::string& path, coord::Watcher watcher) override {
    auto reply = ForwardingCoordination::get(path, std::move(watcher));
    std::lock_guard lock(mu_);
    if (!armed_ || path.rfind(prefix_, 0) != 0) return reply;
    coord::Promise<coord::Node> held;
    held_.push_back([reply, held]() mutable {
      reply.then([held](const coord::Result<coord::Node>& r) { held.set(r); });
    });
    return held.future();
  }
  void arm() {
    std::lock_guard lock(mu_);
    armed_ = true;
  }
  size_t held() {
    std::lock_guard lock(mu_);
    return held_.size();
  }
  void release() {
    std::vector<std::function<void()>> held;
    {
      std::lock_guard lock(mu_);
      armed_ = false;
      held.swap(held_);
    }
    for (auto& h : held) h();
  }

 private:
  const std::string prefix_;
  std::mutex mu_;
  bool armed_ = false;
  std::vector<std::function<void()>> held_;
};

// Under a steady flood of single submits some read of a new batch is always out. The waiting
// count is published all the same once the first scan is in: it used to wait for a moment with
// no read out, which such a flood never gave, so the API's flood cap went unchecked.
TEST_F(BatchSchedulerTest, PublishesTheWaitingCountWhileANewBatchIsStillBeingRead) {
  auto owned = std::make_unique<HoldingPendingReads>(leader_, layout_.pendingRoot() + "/");
  HoldingPendingReads& via = *owned;
  via_ = std::move(owned);  // the fixture keeps it past the scheduler's stop
  submit({spec(), spec(), spec()});
  start(&via);
  ASSERT_TRUE(settle([&] { return scheduler_->snapshot().pending == 3u; }));
  via.arm();
  submit({spec()});  // its pending state's read stays out
  ASSERT_TRUE(settle([&] { return via.held() > 0; }));
  exec_.advance(1s);
  ASSERT_TRUE(settle([&] {
    auto node = server_->peek(layout_.pendingRoot());
    auto count = node ? tasks::decodeWaiting(node->data) : std::nullopt;
    return count && count->waiting == 3u;  // the batch still being read is not counted yet
  }));
  via.release();
  ASSERT_TRUE(settle([&] { return scheduler_->snapshot().pending == 4u; }));
  EXPECT_TRUE(fenced().empty());
}

// The waiting count for the API's max_pending_tasks: published in /pending's data once the
// first scan is in, at most once per interval, only when it changed; fenced by the epoch.
TEST_F(BatchSchedulerTest, PublishesTheWaitingCountAtMostOncePerInterval) {
  auto published = [&]() -> std::optional<tasks::WaitingCount> {
    auto node = server_->peek(layout_.pendingRoot());
    return node ? tasks::decodeWaiting(node->data) : std::nullopt;
  };
  auto waiting = [&]() -> std::optional<uint64_t> {
    auto count = published();
    if (!count) return std::nullopt;
    return count->waiting;
  };
  submit({spec(), spec(), spec()});
  submit({spec()}, wall() + 60'000);  // delayed: waiting too
  start();
  ASSERT_TRUE(settle([&] { return scheduler_->snapshot().pending == 3u; }));
  exec_.advance(1s);  // the first tick after the scan is in
  ASSERT_TRUE(settle([&] { return waiting() == 4u; }));
  EXPECT_EQ(published()->delayed, 1u);
  EXPECT_EQ(published()->held, 0u);
  addWorker("w1", 2, 0);
  ASSERT_TRUE(settle([&] { return held("w1") == 2; }));
  quiesce();
  EXPECT_EQ(waiting(), 4u);  // not rewritten before the interval is up
  exec_.advance(1s);
  ASSERT_TRUE(settle([&] { return waiting() == 2u; }));
  EXPECT_EQ(published()->delayed, 1u);
  EXPECT_EQ(published()->held, 2u);  // what /v1/cluster shows as assigned and running
  const auto version = server_->peek(layout_.pendingRoot())->stat.version;
  exec_.advance(1s);
  quiesce();
  exec_.advance(1s);
  quiesce();
  EXPECT_EQ(server_->peek(layout_.pendingRoot())->stat.version, version);  // unchanged: no write
  EXPECT_TRUE(fenced().empty());
}

// A backlog of many small batches must not cost the leader one watch each (the C client's
// session-event handling is quadratic in its watches): past max_watched, batches are read
// without a watch and get one, oldest first, as watched ones end. No task waits for it.
TEST_F(BatchSchedulerTest, WatchesAtMostMaxWatchedPendingStatesAndTheRestAsTheyFree) {
  options_.max_watched = 1;
  addWorker("w1", 1, 0);
  std::string b1 = submit({spec()});
  std::string b2 = submit({spec()});
  std::string b3 = submit({spec()});
  start();
  ASSERT_TRUE(settle([&] { return held("w1") == 1; }));
  quiesce();
  EXPECT_EQ(scheduler_->watchedPendingStates(), 1u);
  EXPECT_EQ(scheduler_->unwatchedPendingStates(), 2u);
  ASSERT_EQ(items("w1")[0].ref.batch, b1);  // FIFO: the oldest batch first
  // b1 ends and its pending state goes: the freed watch goes to b2 (read again, with a watch).
  commitAll("w1");
  // b2's task goes out once the leader saw b1's chunk go; then the sweep drops b1's state.
  ASSERT_TRUE(settle([&] { return held("w1") == 1; }));
  quiesce();
  scheduler_->sweepNow();
  ASSERT_TRUE(settle([&] { return !pendingOf(b1); }));
  ASSERT_TRUE(settle([&] { return scheduler_->unwatchedPendingStates() == 1; }));
  EXPECT_EQ(scheduler_->watchedPendingStates(), 1u);
  // Every task still runs, each once.
  size_t done = 1;
  ASSERT_TRUE(settle([&] {
    EXPECT_LE(scheduler_->watchedPendingStates(), 1u);
    done += commitAll("w1");
    scheduler_->sweepNow();
    return done == 3 && !pendingOf(b2) && !pendingOf(b3);
  }));
  EXPECT_EQ(scheduler_->watchedPendingStates(), 0u);
  EXPECT_EQ(scheduler_->unwatchedPendingStates(), 0u);
  for (const auto& b : {b1, b2, b3}) EXPECT_EQ(outcomesOf(b).size(), 1u) << b;
}

}  // namespace
}  // namespace drover::scheduler

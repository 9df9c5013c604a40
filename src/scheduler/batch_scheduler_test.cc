#include "scheduler/batch_scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/eventually.h"
#include "coord/fake/fake_coordination.h"
#include "coord/forwarding.h"
#include "coord/paths.h"
#include "scheduler/batch_test_actors.h"

namespace drover::scheduler {
namespace {

using coord::CreateMode;
using coord::CreateOp;
using coord::FakeCoordination;
using coord::FakeServer;
using tasks::State;
using namespace std::chrono_literals;
namespace actors = testing;

// Calls `hook` with the ops of each multi before passing it on (a concurrent writer's move).
class HookedCoordination : public coord::ForwardingCoordination {
 public:
  using Hook = std::function<void(const std::vector<coord::Op>&)>;
  HookedCoordination(coord::Coordination& inner, Hook hook)
      : ForwardingCoordination(inner), hook_(std::move(hook)) {}
  coord::Future<std::vector<coord::OpResult>> multi(std::vector<coord::Op> ops) override {
    hook_(ops);
    return ForwardingCoordination::multi(std::move(ops));
  }

 private:
  Hook hook_;
};

class BatchSchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const auto& dir : layout_.directoriesV2()) ASSERT_TRUE(coord::ensurePath(admin_, dir));
    ASSERT_TRUE(admin_.create(CreateOp{layout_.epoch(), "", CreateMode::kPersistent, {}}).get());
    auto stat = admin_.set(layout_.epoch(), "leader-1", coord::kAnyVersion).get();
    ASSERT_TRUE(stat);
    epoch_ = stat->version;
    t0_ = exec_.clock().now();
    options_.sweep_interval = std::chrono::hours(1);  // tests call sweepNow()
    options_.retry_backoff = base::Backoff{10ms, 100ms, 2.0, 0.0};
    options_.orphan_dir_grace = 0ms;
    options_.first_assign_after = std::chrono::hours(1);
    options_.wall_ms = [this] { return wall(); };
  }
  void TearDown() override {
    if (scheduler_) scheduler_->stop();
  }

  int64_t wall() const {
    return wall0_ +
           std::chrono::duration_cast<std::chrono::milliseconds>(exec_.clock().now() - t0_).count();
  }

  void start(coord::Coordination* via = nullptr) {
    scheduler_ = std::make_unique<BatchScheduler>(
        via ? *via : leader_, layout_, options_, epoch_,
        [this](std::string reason) {
          std::lock_guard lock(mu_);
          fenced_.push_back(reason);
        },
        exec_);
    scheduler_->start();
  }
  // Runs the executor until `pred` holds (deadline 5 s).
  bool settle(const std::function<bool()>& pred) {
    return base::eventually([&] {
      exec_.runReady();
      return pred();
    });
  }
  // Lets everything that is going to happen happen (for "nothing more happens" checks).
  void quiesce() {
    for (int i = 0; i < 20; ++i) {
      exec_.runReady();
      std::this_thread::sleep_for(2ms);
    }
  }

  static tasks::TaskSpec spec(int priority = 5, int max_attempts = 3, std::string queue = "default",
                              std::string id = "") {
    tasks::TaskSpec s;
    s.id = std::move(id);
    s.type = "noop";
    s.priority = priority;
    s.max_attempts = max_attempts;
    s.queue = std::move(queue);
    return s;
  }
  std::string submit(std::vector<tasks::TaskSpec> specs, int64_t not_before = 0, int64_t at = -1) {
    auto name = actors::submitBatch(admin_, layout_, std::move(specs), at < 0 ? wall() : at,
                                    ++random_, not_before);
    EXPECT_FALSE(name.empty());
    return name;
  }
  void addWorker(const std::string& id, int slots, int prefetch = 0,
                 std::vector<std::string> queues = {"default"}) {
    tasks::WorkerInfo info{id, "host", 1, slots, {}, "", 0, prefetch, std::move(queues), {}};
    ASSERT_TRUE(coord::ensurePath(admin_, layout_.assignmentsOf(id)));
    ASSERT_TRUE(workers_
                    .create(CreateOp{
                        layout_.worker(id), tasks::toJson(info).dump(), CreateMode::kEphemeral, {}})
                    .get());
  }
  void setRunning(const std::string& id, int slots, int prefetch,
                  const std::vector<std::string>& running) {
    tasks::WorkerInfo info{id, "host", 1, slots, {}, "", 0, prefetch, {"default"}, {}};
    for (const auto& r : running) info.running[r] = wall();
    ASSERT_TRUE(workers_.set(layout_.worker(id), tasks::toJson(info).dump(), -1).get());
  }
  void removeWorker(const std::string& id) {
    ASSERT_TRUE(workers_.remove(layout_.worker(id), coord::kAnyVersion).get());
  }
  std::vector<actors::ChunkRead> chunks(const std::string& w) {
    return actors::chunksOf(admin_, layout_, w);
  }
  size_t held(const std::string& w) {
    size_t n = 0;
    for (const auto& c : chunks(w)) n += c.chunk.items.size();
    return n;
  }
  std::vector<tasks::ChunkItem> items(const std::string& w) {
    std::vector<tasks::ChunkItem> out;
    for (const auto& c : chunks(w)) {
      for (const auto& item : c.chunk.items) out.push_back(item);
    }
    return out;
  }
  // Commits every task worker w holds; returns how many.
  size_t commitAll(const std::string& w) {
    size_t n = 0;
    for (const auto& c : chunks(w)) {
      auto r = actors::commit(admin_, layout_, w, c, actors::refsOf(c.chunk), wall());
      EXPECT_TRUE(r) << r.error().toString();
      n += c.chunk.items.size();
    }
    return n;
  }
  std::optional<tasks::PendingState> pendingOf(const std::string& batch) {
    auto node = server_->peek(layout_.pending(batch));
    if (!node) return std::nullopt;
    return tasks::decodePending(node->data);
  }
  std::vector<tasks::Outcome> outcomesOf(const std::string& batch) {
    std::vector<tasks::Outcome> out;
    auto names = admin_.children(layout_.batch(batch), nullptr).get();
    if (!names) return out;
    for (const auto& n : *names) {
      auto node = server_->peek(layout_.batch(batch) + "/" + n);
      auto rec = node ? tasks::decodeResults(node->data) : std::nullopt;
      if (rec) out.insert(out.end(), rec->outcomes.begin(), rec->outcomes.end());
    }
    return out;
  }
  std::vector<std::string> fenced() {
    std::lock_guard lock(mu_);
    return fenced_;
  }

  tasks::Layout layout_{"/drover"};
  std::shared_ptr<FakeServer> server_ = std::make_shared<FakeServer>();
  FakeCoordination admin_{server_};
  FakeCoordination workers_{server_};
  FakeCoordination leader_{server_};
  base::ManualExecutor exec_;
  base::TimePoint t0_;
  int64_t wall0_ = 1'760'000'000'000;
  uint32_t random_ = 0;
  int32_t epoch_ = 0;
  BatchScheduler::Options options_;
  std::unique_ptr<HookedCoordination> via_;  // outlives the scheduler
  std::unique_ptr<BatchScheduler> scheduler_;
  std::mutex mu_;
  std::vector<std::string> fenced_;
};

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

// --- Dependencies (docs/ZNODES.md "Dependencies (issue 10): decisions") ---

tasks::TaskSpec dependent(std::string id, std::vector<std::string> deps) {
  tasks::TaskSpec s;
  s.id = std::move(id);
  s.type = "noop";
  s.depends_on = std::move(deps);
  return s;
}

std::set<std::string> heldIds(const std::vector<tasks::ChunkItem>& items) {
  std::set<std::string> out;
  for (const auto& i : items) out.insert(i.spec ? i.spec->id : i.id);
  return out;
}

TEST_F(BatchSchedulerTest, DependentsWaitAndAreReleasedInMemory) {
  addWorker("w1", 8, 0);
  int multis = 0;
  via_ = std::make_unique<HookedCoordination>(leader_,
                                              [&](const std::vector<coord::Op>&) { ++multis; });
  // A diamond: a -> {b, c} -> d ("#0" names a by its place).
  std::string batch = submit({dependent("a", {}), dependent("b", {"#0"}), dependent("c", {"a"}),
                              dependent("d", {"b", "c"})});
  start(via_.get());
  ASSERT_TRUE(settle([&] { return held("w1") == 1; }));
  quiesce();
  EXPECT_EQ(heldIds(items("w1")), (std::set<std::string>{"a"}));
  EXPECT_EQ(scheduler_->snapshot().pending, 0u);  // b, c, d are held out of the index
  const int before = multis;
  ASSERT_EQ(commitAll("w1"), 1u);
  ASSERT_TRUE(settle([&] { return held("w1") == 2; }));
  EXPECT_EQ(heldIds(items("w1")), (std::set<std::string>{"b", "c"}));
  // Only assign multis (one chunk each): the release itself wrote nothing.
  auto bc = chunks("w1");
  EXPECT_EQ(multis - before, static_cast<int>(bc.size()));
  // d waits for both: one done is not enough.
  const auto& first = bc[0].chunk.items[0];
  ASSERT_TRUE(actors::commit(admin_, layout_, "w1", bc[0], {first.ref}, wall()));
  quiesce();
  EXPECT_EQ(heldIds(items("w1")).count("d"), 0u);
  commitAll("w1");
  ASSERT_TRUE(settle([&] { return heldIds(items("w1")) == std::set<std::string>{"d"}; }));
  commitAll("w1");
  ASSERT_TRUE(settle([&] { return outcomesOf(batch).size() == 4; }));
  for (const auto& o : outcomesOf(batch)) EXPECT_EQ(o.state, State::kSucceeded);
  EXPECT_TRUE(fenced().empty());
}

TEST_F(BatchSchedulerTest, AFailedDependencyCancelsItsSubgraphAcrossBatches) {
  addWorker("w1", 8, 0);
  std::string first = submit({dependent("root", {}), dependent("x", {"root"}),
                              dependent("y", {"#1"}), dependent("free", {})});
  std::string second = submit({dependent("far", {"y"}), dependent("", {"far"})});
  start();
  ASSERT_TRUE(settle([&] { return held("w1") == 2; }));
  EXPECT_EQ(heldIds(items("w1")), (std::set<std::string>{"root", "free"}));
  auto c = chunks("w1");
  ASSERT_EQ(c.size(), 1u);
  std::vector<tasks::TaskRef> root;
  for (const auto& item : c[0].chunk.items) {
    if ((item.spec ? item.spec->id : item.id) == "root") root.push_back(item.ref);
  }
  ASSERT_TRUE(actors::commit(admin_, layout_, "w1", c[0], root, wall(), State::kFailed));
  auto cancelled = [&](const std::string& batch) {
    std::map<uint32_t, std::string> out;
    for (const auto& o : outcomesOf(batch)) {
      if (o.state == State::kCancelled) out[o.index] = o.error;
    }
    return out;
  };
  ASSERT_TRUE(
      settle([&] { return cancelled(first).size() == 2 && cancelled(second).size() == 2; }));
  EXPECT_EQ(cancelled(first), (std::map<uint32_t, std::string>{{1, "dependency root failed"},
                                                               {2, "dependency x was cancelled"}}));
  EXPECT_EQ(cancelled(second)[0], "dependency y was cancelled");
  EXPECT_EQ(cancelled(second)[1], "dependency far was cancelled");
  quiesce();
  EXPECT_EQ(heldIds(items("w1")), (std::set<std::string>{"free"}));  // none of them ran
  auto pending = pendingOf(second);
  EXPECT_TRUE(!pending || pending->waiting().empty());
  EXPECT_TRUE(fenced().empty());
}

TEST_F(BatchSchedulerTest, ANewLeaderReadsOutcomesItMissed) {
  addWorker("w1", 8, 0);
  submit({dependent("root", {}), dependent("next", {"root"})});
  start();
  ASSERT_TRUE(settle([&] { return held("w1") == 1; }));
  scheduler_->stop();
  scheduler_.reset();
  commitAll("w1");  // no leader sees it happen
  auto stat = admin_.set(layout_.epoch(), "leader-2", coord::kAnyVersion).get();
  ASSERT_TRUE(stat);
  epoch_ = stat->version;
  start();
  ASSERT_TRUE(settle([&] { return heldIds(items("w1")) == std::set<std::string>{"next"}; }));
  EXPECT_TRUE(fenced().empty());
}

}  // namespace
}  // namespace drover::scheduler

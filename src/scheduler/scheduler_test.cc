#include "scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "scheduler/scheduler_fixture.h"

namespace drover::scheduler {
namespace {

TEST_F(SchedulerTest, AssignsPendingJobs) {
  addWorker("w1", 2);
  addWorker("w2", 2);
  submit("a");
  submit("b");
  submit("c");
  start();
  ASSERT_TRUE(base::eventually([&] { return assignments().size() == 3; }));
  for (const char* id : {"a", "b", "c"}) {
    EXPECT_TRUE(isAssigned(id)) << id;
    auto status = statusOf(id);
    EXPECT_EQ(status->attempts, 1);
    EXPECT_EQ(status->worker, assignments()[id]);
    EXPECT_GT(status->submitted_at, 0);  // carried over from the status read
    auto node = server_->peek(layout_.assignment(status->worker, id));
    auto a = tasks::assignmentFromJson(*tasks::parseJson(node->data));
    ASSERT_TRUE(a);
    EXPECT_EQ(a->spec.id, id);
    EXPECT_EQ(a->attempt, 1);
  }
  EXPECT_TRUE(base::eventually([&] { return scheduler_->snapshot().assigned_total == 3; }));
  auto stats = scheduler_->snapshot();
  EXPECT_TRUE(stats.running);
  EXPECT_EQ(stats.pending, 0u);
  ASSERT_EQ(stats.workers.size(), 2u);
  EXPECT_EQ(stats.workers[0].assigned + stats.workers[1].assigned, 3);
  EXPECT_TRUE(fenced().empty());
  // The batch appended one event record next to the three submit records.
  EXPECT_EQ(children(layout_.events()).size(), 4u);
}

TEST_F(SchedulerTest, AssignsJobsSubmittedLater) {
  addWorker("w1", 4);
  start();
  ASSERT_TRUE(base::eventually([&] { return scheduler_->snapshot().workers.size() == 1; }));
  submit("late");
  EXPECT_TRUE(base::eventually([&] { return isAssigned("late"); }));
  // The bucket's watch was re-armed: a second job in the same bucket is seen too.
  std::string twin;
  for (int i = 0; twin.empty(); ++i) {
    std::string id = "twin" + std::to_string(i);
    if (tasks::Layout::bucketIndex(id) == tasks::Layout::bucketIndex("late")) twin = id;
  }
  submit(twin);
  EXPECT_TRUE(base::eventually([&] { return isAssigned(twin); }));
  addWorker("w2", 1);
  EXPECT_TRUE(base::eventually([&] { return scheduler_->snapshot().workers.size() == 2; }));
  addWorker("w3", 1);
  EXPECT_TRUE(base::eventually([&] { return scheduler_->snapshot().workers.size() == 3; }));
}

TEST_F(SchedulerTest, JobWithoutStatusIsLeftAlone) {
  addWorker("w1", 2);
  submit("ok");
  tasks::Job job{tasks::TaskSpec{.id = "bare", .type = "noop"}, 1, 0};
  ASSERT_TRUE(admin_
                  .create(CreateOp{
                      layout_.job("bare"), tasks::toJson(job).dump(), CreateMode::kPersistent, {}})
                  .get());
  start();
  ASSERT_TRUE(base::eventually([&] { return isAssigned("ok"); }));
  EXPECT_TRUE(jobOf("bare").has_value());
  EXPECT_EQ(assignments().size(), 1u);
}

TEST_F(SchedulerTest, PausesWhileDisconnectedAndCatchesUpAfter) {
  addWorker("w1", 4);
  start();
  ASSERT_TRUE(base::eventually([&] { return scheduler_->snapshot().workers.size() == 1; }));
  leader_.disconnect();
  submit("a");
  submit("b");
  EXPECT_FALSE(base::eventually([&] { return !assignments().empty(); }, 100ms));
  leader_.reconnect();
  EXPECT_TRUE(base::eventually([&] { return isAssigned("a") && isAssigned("b"); }));
  EXPECT_TRUE(fenced().empty());
}

TEST_F(SchedulerTest, HigherPriorityFirstFifoWithinAPriority) {
  addWorker("w1", 1);
  submit("low-1", 2);
  submit("mid-1", 5);
  submit("high-1", 9);
  submit("mid-2", 5);
  submit("high-2", 9);
  submit("low-2", 2);
  start();
  std::vector<std::string> order;
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(base::eventually([&] { return assignments().size() == 1; })) << i << " " << [&] {
      auto st = scheduler_->snapshot();
      std::string out = "pending=" + std::to_string(st.pending) +
                        " delayed=" + std::to_string(st.delayed) +
                        " batches=" + std::to_string(st.batches) +
                        " failures=" + std::to_string(st.batch_failures) +
                        " assignments=" + std::to_string(assignments().size());
      for (const auto& w : st.workers) out += " " + w.id + ":" + std::to_string(w.assigned);
      return out;
    }();
    auto [id, w] = *assignments().begin();
    order.push_back(id);
    complete(w, id);
  }
  EXPECT_EQ(order,
            (std::vector<std::string>{"high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2"}));
}

// Passes the scheduler's calls through and, right after each of its multis lands, records the
// most assignments each worker holds in the tree: a high-water mark over the whole run, so a
// worker overfilled for a moment is seen even if the test never looks at that moment.
class AssignmentHighWater final : public coord::ForwardingCoordination {
 public:
  AssignmentHighWater(coord::Coordination& inner, FakeServer& server, std::string root)
      : ForwardingCoordination(inner), server_(server), root_(std::move(root) + "/") {}

  coord::Future<std::vector<coord::OpResult>> multi(std::vector<coord::Op> ops) override {
    auto r = inner_.multi(std::move(ops)).get();  // the fake answers at once
    std::map<std::string, int> held;
    for (const auto& [path, data] : server_.dump()) {  // {root}/{worker}/{task}
      if (path.rfind(root_, 0) != 0) continue;
      auto slash = path.find('/', root_.size());
      if (slash != std::string::npos) ++held[path.substr(root_.size(), slash - root_.size())];
    }
    std::lock_guard lock(mu_);
    ++multis_;
    for (const auto& [w, n] : held) high_[w] = std::max(high_[w], n);
    return coord::Future<std::vector<coord::OpResult>>::ready(std::move(r));
  }
  std::map<std::string, int> highWater() const {
    std::lock_guard lock(mu_);
    return high_;
  }
  size_t multis() const {
    std::lock_guard lock(mu_);
    return multis_;
  }

 private:
  FakeServer& server_;
  const std::string root_;
  mutable std::mutex mu_;
  std::map<std::string, int> high_;
  size_t multis_ = 0;
};

TEST_F(SchedulerTest, NeverMoreThanAWorkersSlots) {
  options_.strategy = "round-robin";
  auto& watch = talkVia<AssignmentHighWater>(*server_, layout_.assignments());
  addWorker("w1", 2);
  addWorker("w2", 1);
  for (int i = 0; i < 10; ++i) submit("t" + std::to_string(i));
  start();
  const std::map<std::string, int> slots{{"w1", 2}, {"w2", 1}};
  int done = 0;
  while (done < 10) {
    const size_t free_slots = std::min<size_t>(3, 10 - done);
    ASSERT_TRUE(base::eventually([&] { return assignments().size() >= free_slots; })) << done;
    // Settled: every task left is either assigned or known to the scheduler and held back.
    ASSERT_TRUE(base::eventually([&] {
      return scheduler_->snapshot().pending + assignments().size() ==
             static_cast<size_t>(10 - done);
    })) << done;
    // At no moment so far has a worker held more than its slots, and now every slot is taken
    // while the rest wait.
    for (const auto& [w, n] : watch.highWater()) EXPECT_LE(n, slots.at(w)) << w << " " << done;
    EXPECT_EQ(assignments().size(), free_slots) << done;
    auto [id, w] = *assignments().begin();
    complete(w, id);
    ++done;
  }
  EXPECT_TRUE(base::eventually([&] { return assignments().empty(); }));
  EXPECT_TRUE(children(layout_.jobBucket("t0")).empty() || !jobOf("t0"));
  // Every assign went through the watch, and each worker was filled to its slots exactly.
  EXPECT_GE(watch.multis(), 1u);
  EXPECT_EQ(watch.highWater(), slots);
}

TEST_F(SchedulerTest, ABusyLeaderDefersRelistingChangedBuckets) {
  // With more jobs waiting than relist_ready_below, a bucket that changes is not re-listed at
  // once: one delayed pass re-lists every changed bucket.
  options_.relist_ready_below = 2;
  options_.relist_delay = 300ms;
  for (int i = 0; i < 6; ++i) submit("busy" + std::to_string(i));  // no worker: all wait
  start();
  ASSERT_TRUE(base::eventually([&] { return scheduler_->snapshot().pending == 6; }));
  size_t lists = leader_.callCount(coord::OpKind::kChildren);
  submit("late");
  // Seen, but only after the delay (300 ms), and by one listing of its bucket.
  EXPECT_FALSE(base::eventually([&] { return scheduler_->snapshot().pending == 7; }, 100ms));
  ASSERT_TRUE(base::eventually([&] { return scheduler_->snapshot().pending == 7; }));
  EXPECT_EQ(leader_.callCount(coord::OpKind::kChildren) - lists, 1u);
  // Once a worker drains the queue below the bound, changes are re-listed at once again.
  addWorker("w1", 10);
  ASSERT_TRUE(base::eventually([&] { return assignments().size() == 7; }));
  submit("quick");
  ASSERT_TRUE(base::eventually([&] { return isAssigned("quick"); }, 250ms));
}

TEST_F(SchedulerTest, AssignsUpToSlotsPlusPrefetch) {
  addWorker("w1", 2, /*prefetch=*/3);
  for (int i = 0; i < 9; ++i) submit("t" + std::to_string(i));
  start();
  ASSERT_TRUE(base::eventually([&] { return assignments().size() == 5; }));
  ASSERT_TRUE(base::eventually([&] { return scheduler_->snapshot().pending == 4; }));
  EXPECT_EQ(assignments().size(), 5u);  // slots + prefetch, not more
  auto [id, w] = *assignments().begin();
  complete(w, id);
  ASSERT_TRUE(base::eventually([&] { return scheduler_->snapshot().pending == 3; }));
  EXPECT_EQ(assignments().size(), 5u);
}

// Issue 9's report: A with 2 slots and prefetch 16, B with 2 slots and none; six tasks all went
// to A and waited while B was idle.
TEST_F(SchedulerTest, AWorkerWithIdleSlotsGetsTasksBeforeAnotherWorkersPrefetchQueue) {
  addWorker("a", 2, /*prefetch=*/16);
  addWorker("b", 2, /*prefetch=*/0);
  start();
  ASSERT_TRUE(base::eventually([&] { return scheduler_->snapshot().workers.size() == 2; }));
  for (int i = 0; i < 6; ++i) submit("t" + std::to_string(i));
  ASSERT_TRUE(base::eventually([&] { return assignments().size() == 6; }));
  std::map<std::string, int> per_worker;
  for (const auto& [id, w] : assignments()) ++per_worker[w];
  EXPECT_EQ(per_worker["b"], 2);
  EXPECT_EQ(per_worker["a"], 4);
}

TEST_F(SchedulerTest, AJobCarriesWhatTheAssignNeedsSoNoStatusIsRead) {
  addWorker("w1", 4);
  submit("warm");
  start();
  // Assigned: the first full scan (which reads job and status) is over.
  ASSERT_TRUE(base::eventually([&] { return assignments().size() == 1; }));
  size_t gets = leader_.callCount(coord::OpKind::kGet);
  for (int i = 0; i < 3; ++i) submit("late" + std::to_string(i));
  ASSERT_TRUE(base::eventually([&] { return assignments().size() == 4; }));
  EXPECT_EQ(leader_.callCount(coord::OpKind::kGet) - gets, 3u);  // the jobs, no status
  for (int i = 0; i < 3; ++i) {
    auto s = statusOf("late" + std::to_string(i));
    ASSERT_TRUE(s);
    EXPECT_EQ(s->state, State::kAssigned);
    EXPECT_GT(s->submitted_at, 0);  // kept from the job
  }
}

TEST_F(SchedulerTest, DeadWorkersAssignmentsAreRequeuedWithTheNextAttempt) {
  addWorker("w1", 5);
  submit("a");
  submit("b");
  start();
  ASSERT_TRUE(base::eventually([&] { return isAssigned("a") && isAssigned("b"); }));
  removeWorker("w1");
  ASSERT_TRUE(base::eventually([&] { return jobOf("a") && jobOf("b"); }));
  for (const char* id : {"a", "b"}) {
    EXPECT_EQ(jobOf(id)->attempt, 2);
    EXPECT_EQ(statusOf(id)->state, State::kPending);
    EXPECT_EQ(statusOf(id)->attempts, 1);
    EXPECT_EQ(tokens(id), 1);
  }
  EXPECT_TRUE(base::eventually([&] { return !server_->peek(layout_.assignmentsOf("w1")); }));
  EXPECT_TRUE(base::eventually([&] { return scheduler_->snapshot().requeued_total == 2; }));
  // A new worker gets them, as attempt 2.
  addWorker("w2", 5);
  ASSERT_TRUE(base::eventually([&] { return isAssigned("a") && isAssigned("b"); }));
  EXPECT_EQ(statusOf("a")->attempts, 2);
  EXPECT_EQ(statusOf("a")->worker, "w2");
}

TEST_F(SchedulerTest, DeadWorkersTaskFailsAtMaxAttempts) {
  addWorker("w1", 1);
  submit("once", 5, /*max_attempts=*/1);
  start();
  ASSERT_TRUE(base::eventually([&] { return isAssigned("once"); }));
  removeWorker("w1");
  ASSERT_TRUE(base::eventually([&] { return statusOf("once")->state == State::kFailed; }));
  EXPECT_EQ(tokens("once"), 0);
  EXPECT_FALSE(statusOf("once")->error.empty());
  EXPECT_GT(statusOf("once")->finished_at, 0);
  EXPECT_TRUE(base::eventually([&] { return scheduler_->snapshot().failed_total == 1; }));
}

TEST_F(SchedulerTest, OrphanedAssignmentsFoundAtStartAreRequeued) {
  // A previous leader assigned to "ghost", which died before this leader started.
  submit("x");
  tasks::Job job = *jobOf("x");
  tasks::Assignment a{job.spec, 1};
  ASSERT_TRUE(admin_
                  .multi({coord::DeleteOp{layout_.job("x"), coord::kAnyVersion},
                          CreateOp{layout_.assignmentsOf("ghost"), "", CreateMode::kPersistent, {}},
                          CreateOp{layout_.assignment("ghost", "x"),
                                   tasks::toJson(a).dump(),
                                   CreateMode::kPersistent,
                                   {}}})
                  .get());
  start();
  ASSERT_TRUE(base::eventually([&] { return jobOf("x").has_value(); }));
  EXPECT_EQ(jobOf("x")->attempt, 2);
  EXPECT_EQ(tokens("x"), 1);
  EXPECT_TRUE(base::eventually([&] { return !server_->peek(layout_.assignmentsOf("ghost")); }));
}

TEST_F(SchedulerTest, FencedSchedulerStepsDownAndWritesNothing) {
  addWorker("w1", 2);
  start();
  ASSERT_TRUE(base::eventually([&] { return scheduler_->snapshot().workers.size() == 1; }));
  // Another node wins the election and bumps the epoch.
  ASSERT_TRUE(admin_.set(layout_.epoch(), "leader-2", coord::kAnyVersion).get());
  submit("a");
  ASSERT_TRUE(base::eventually([&] { return !fenced().empty(); }));
  EXPECT_EQ(fenced(), std::vector<std::string>{"epoch moved"});
  EXPECT_TRUE(jobOf("a").has_value());
  EXPECT_TRUE(assignments().empty());
  EXPECT_EQ(statusOf("a")->state, State::kPending);
  auto stats = scheduler_->snapshot();
  EXPECT_TRUE(stats.fenced);
  EXPECT_EQ(stats.fenced_count, 1u);
  // It stays down: later jobs are not touched, and on_fenced is not called again.
  submit("b");
  addWorker("w2", 2);
  EXPECT_FALSE(base::eventually([&] { return !assignments().empty(); }, 200ms));
  EXPECT_EQ(fenced().size(), 1u);
}

TEST_F(SchedulerTest, SessionExpiryFences) {
  start();
  ASSERT_TRUE(base::eventually([&] { return scheduler_->snapshot().running; }));
  leader_.expireSession();
  ASSERT_TRUE(base::eventually([&] { return !fenced().empty(); }));
  EXPECT_EQ(fenced(), std::vector<std::string>{"session expired"});
}

TEST_F(SchedulerTest, AmbiguousAssignLeavesOneTokenPerTask) {
  addWorker("w1", 10);
  for (int i = 0; i < 5; ++i) submit("t" + std::to_string(i));
  leader_.failNext(coord::OpKind::kMulti, coord::Code::kConnectionLoss,
                   coord::FaultMode::kAfterApply);
  start();
  ASSERT_TRUE(base::eventually([&] { return leader_.pendingFaults() == 0; }));
  ASSERT_TRUE(base::eventually([&] { return scheduler_->snapshot().batch_failures >= 1; }));
  ASSERT_TRUE(base::eventually([&] { return assignments().size() == 5; }));
  // The re-read finds the assign landed: the worker's count comes from its listing, and no task
  // gets a second token.
  EXPECT_TRUE(base::eventually([&] {
    auto stats = scheduler_->snapshot();
    return stats.workers.size() == 1 && stats.workers[0].assigned == 5 && stats.pending == 0;
  }));
  EXPECT_EQ(scheduler_->snapshot().assigned_total, 0u);  // no multi of ours reported success
  for (int i = 0; i < 5; ++i) {
    std::string id = "t" + std::to_string(i);
    EXPECT_EQ(tokens(id), 1) << id;
    EXPECT_TRUE(isAssigned(id)) << id;
  }
  EXPECT_TRUE(fenced().empty());
}

TEST_F(SchedulerTest, LostAssignRequestIsRetried) {
  addWorker("w1", 10);
  for (int i = 0; i < 5; ++i) submit("t" + std::to_string(i));
  leader_.failNext(coord::OpKind::kMulti, coord::Code::kConnectionLoss,
                   coord::FaultMode::kBeforeApply);
  start();
  ASSERT_TRUE(base::eventually([&] { return assignments().size() == 5; }));
  EXPECT_EQ(leader_.pendingFaults(), 0u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(tokens("t" + std::to_string(i)), 1);
  EXPECT_TRUE(base::eventually([&] { return scheduler_->snapshot().assigned_total == 5; }));
  EXPECT_GE(scheduler_->snapshot().batch_failures, 1u);
}

TEST_F(SchedulerTest, CancelledJobDoesNotBlockItsBatch) {
  // A long read backoff keeps the scheduler's view stale after the cancel below.
  options_.retry_backoff = base::Backoff{3s, 3s, 1.0, 0.0};
  submit("a");
  submit("b");
  submit("c");
  start();
  ASSERT_TRUE(base::eventually([&] { return scheduler_->snapshot().pending == 3; }));
  // The re-listing of b's bucket that the cancel triggers fails, so the index still has b.
  leader_.failNextOn(coord::OpKind::kChildren, layout_.jobBucket("b"),
                     coord::Code::kConnectionLoss);
  auto status = *statusOf("b");
  status.state = State::kCancelled;
  apply(tasks::cancel(layout_, *statusOf("b"), status));
  ASSERT_TRUE(base::eventually([&] { return leader_.pendingFaults() == 0; }));
  addWorker("w1", 10);
  ASSERT_TRUE(base::eventually([&] { return isAssigned("a") && isAssigned("c"); }, 2s));
  EXPECT_EQ(statusOf("b")->state, State::kCancelled);
  EXPECT_EQ(tokens("b"), 0);
  // The batch with b failed first (stats are published just after the tree changes).
  EXPECT_TRUE(base::eventually([&] { return scheduler_->snapshot().batch_failures >= 1; }));
}

TEST_F(SchedulerTest, NotBeforeDelaysAJob) {
  addWorker("w1", 2);
  int64_t not_before = base::wallMillis() + 600;
  submit("later", 5, 3, not_before);
  submit("now");
  start();
  ASSERT_TRUE(base::eventually([&] { return isAssigned("now"); }));
  EXPECT_TRUE(base::eventually([&] { return scheduler_->snapshot().delayed == 1; }));
  EXPECT_TRUE(jobOf("later").has_value());
  ASSERT_TRUE(base::eventually([&] { return isAssigned("later"); }));
  EXPECT_GE(base::wallMillis(), not_before);
}

TEST_F(SchedulerTest, JobOfAFinishedTaskIsDeleted) {
  submit("done");
  auto status = *statusOf("done");
  status.state = State::kSucceeded;
  ASSERT_TRUE(
      admin_.set(layout_.status("done"), tasks::toJson(status).dump(), coord::kAnyVersion).get());
  addWorker("w1", 1);
  start();
  ASSERT_TRUE(base::eventually([&] { return !jobOf("done"); }));
  EXPECT_TRUE(assignments().empty());
  EXPECT_EQ(statusOf("done")->state, State::kSucceeded);
}

TEST_F(SchedulerTest, TrimsTheEventLog) {
  options_.events_keep = 5;
  options_.sweep_interval = 50ms;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(admin_.create(tasks::eventOp(layout_, {{"x", State::kPending, 0, "", i}})).get());
  }
  auto before = children(layout_.events());
  ASSERT_EQ(before.size(), 20u);
  start();
  ASSERT_TRUE(base::eventually([&] { return children(layout_.events()).size() == 5; }));
  EXPECT_EQ(children(layout_.events()),
            std::vector<std::string>(before.end() - 5, before.end()));  // the newest stay
  EXPECT_TRUE(base::eventually([&] { return scheduler_->snapshot().events_trimmed == 15; }));
  EXPECT_EQ(leader_.callCount(coord::OpKind::kRemove), 0u);  // one multi, not 15 deletes
}

TEST_F(SchedulerTest, TrimFallsBackToSingleDeletesWhenAMultiFails) {
  options_.events_keep = 2;
  options_.sweep_interval = 50ms;
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(admin_.create(tasks::eventOp(layout_, {{"x", State::kPending, 0, "", i}})).get());
  }
  leader_.failNextOn(coord::OpKind::kMulti, layout_.events(), coord::Code::kNoNode);
  start();
  ASSERT_TRUE(base::eventually([&] { return children(layout_.events()).size() == 2; }));
  EXPECT_EQ(leader_.pendingFaults(), 0u);
  // The trim multi failed, and its four records went one delete at a time.
  EXPECT_EQ(leader_.callCount(coord::OpKind::kRemove), 4u);
  EXPECT_TRUE(base::eventually([&] { return scheduler_->snapshot().events_trimmed == 4; }));
}

TEST_F(SchedulerTest, DeletesOldTerminalStatuses) {
  options_.sweep_interval = 50ms;
  options_.retention_age = std::chrono::hours(1);
  int64_t now = base::wallMillis();
  auto seed = [&](const std::string& id, State state, int64_t finished_at) {
    tasks::TaskStatus s;
    s.spec = tasks::TaskSpec{.id = id, .type = "noop"};
    s.state = state;
    s.finished_at = finished_at;
    ASSERT_TRUE(admin_
                    .create(CreateOp{
                        layout_.status(id), tasks::toJson(s).dump(), CreateMode::kPersistent, {}})
                    .get());
  };
  seed("old-done", State::kSucceeded, now - 2 * 3600 * 1000);
  seed("old-failed", State::kFailed, now - 3 * 3600 * 1000);
  seed("new-done", State::kSucceeded, now - 1000);
  seed("old-running", State::kRunning, 0);
  start();
  ASSERT_TRUE(base::eventually([&] { return !statusOf("old-done") && !statusOf("old-failed"); }));
  EXPECT_TRUE(statusOf("new-done"));
  EXPECT_TRUE(statusOf("old-running"));
}

TEST_F(SchedulerTest, KeepsAtMostTheRetentionCount) {
  options_.sweep_interval = 50ms;
  options_.retention_count = 3;
  int64_t now = base::wallMillis();
  for (int i = 0; i < 6; ++i) {
    tasks::TaskStatus s;
    s.spec = tasks::TaskSpec{.id = "s" + std::to_string(i), .type = "noop"};
    s.state = State::kSucceeded;
    s.finished_at = now - 1000 * (10 - i);  // s0 finished first
    ASSERT_TRUE(
        admin_
            .create(CreateOp{
                layout_.status(s.spec.id), tasks::toJson(s).dump(), CreateMode::kPersistent, {}})
            .get());
  }
  start();
  ASSERT_TRUE(base::eventually([&] { return statusIds().size() == 3; }));
  EXPECT_EQ(statusIds(), (std::vector<std::string>{"s3", "s4", "s5"}));
}

TEST_F(SchedulerTest, RetentionThatFallsBehindRunsEverySweepUntilCaughtUp) {
  // Far more statuses over the count than one pass may delete, and the regular cadence is rare:
  // a pass that finds an excess makes the next sweep run retention again.
  options_.sweep_interval = 50ms;
  options_.retention_every = 1000;  // would be 50 s
  options_.retention_count = 2;
  options_.retention_reads_per_sweep = 3;
  int64_t now = base::wallMillis();
  for (int i = 0; i < 14; ++i) {
    tasks::TaskStatus s;
    s.spec = tasks::TaskSpec{.id = "r" + std::to_string(i), .type = "noop"};
    s.state = State::kSucceeded;
    s.finished_at = now - 1000 * (20 - i);
    ASSERT_TRUE(
        admin_
            .create(CreateOp{
                layout_.status(s.spec.id), tasks::toJson(s).dump(), CreateMode::kPersistent, {}})
            .get());
  }
  options_.reconcile_every = 1000;
  start();
  // Each pass deletes the oldest of the slice it read, so which two remain depends on the slices.
  ASSERT_TRUE(base::eventually([&] { return statusIds().size() == 2; }));
}

// A pass deletes in multis, not one request per status: single deletes by the thousand held the
// leader's assignment multis back behind them. A multi that fails on one op (a status rewritten
// after its read: kBadVersion) falls back to versioned single deletes for its statuses.
TEST_F(SchedulerTest, RetentionDeletesInMultisFallingBackToSingleDeletesOnAClash) {
  options_.sweep_interval = 50ms;
  options_.retention_age = std::chrono::hours(1);
  options_.reconcile_every = 1000;
  int64_t old = base::wallMillis() - 2 * 3600 * 1000;
  const int n = 450;
  std::vector<coord::Op> seed;
  for (int i = 0; i < n; ++i) {
    tasks::TaskStatus s;
    s.spec = tasks::TaskSpec{.id = "o" + std::to_string(i), .type = "noop"};
    s.state = State::kSucceeded;
    s.finished_at = old;
    seed.push_back(
        CreateOp{layout_.status(s.spec.id), tasks::toJson(s).dump(), CreateMode::kPersistent, {}});
  }
  ASSERT_TRUE(admin_.multi(std::move(seed)).get());
  // The first delete multi fails as a version clash would.
  leader_.failNextOn(coord::OpKind::kMulti, layout_.statuses() + "/", coord::Code::kBadVersion);
  size_t removes_before = leader_.callCount(coord::OpKind::kRemove);
  size_t multis_before = leader_.callCount(coord::OpKind::kMulti);
  start();
  ASSERT_TRUE(base::eventually([&] { return statusIds().empty(); }, 10s));
  EXPECT_EQ(leader_.pendingFaults(), 0u);
  // 450 statuses: three multis (200, 200, 50); the failed one's 200 went one by one.
  EXPECT_EQ(leader_.callCount(coord::OpKind::kRemove) - removes_before, 200u);
  EXPECT_GE(leader_.callCount(coord::OpKind::kMulti) - multis_before, 3u);
  // Counted as each delete's reply comes back to the scheduler's thread, which may be just after
  // the tree is empty.
  EXPECT_TRUE(base::eventually([&] {
    return scheduler_->snapshot().statuses_deleted == static_cast<uint64_t>(n);
  })) << scheduler_->snapshot().statuses_deleted;
}

// Reads of one path are answered only on release (applied at once, like a ZooKeeper read whose
// reply is still on its way).
class HeldReads final : public coord::ForwardingCoordination {
 public:
  HeldReads(coord::Coordination& inner, std::string path)
      : ForwardingCoordination(inner), path_(std::move(path)) {}
  ~HeldReads() override { release(); }
  void release() {
    std::vector<std::function<void()>> answers;
    {
      std::lock_guard lock(mu_);
      released_ = true;
      answers.swap(answers_);
    }
    for (auto& a : answers) a();
  }
  coord::Future<coord::Node> get(const std::string& path, coord::Watcher watcher) override {
    auto r = inner_.get(path, std::move(watcher)).get();
    std::lock_guard lock(mu_);
    if (path != path_ || released_) return coord::Future<coord::Node>::ready(std::move(r));
    coord::Promise<coord::Node> p;
    answers_.push_back([p, r] { p.set(r); });
    return p.future();
  }

 private:
  const std::string path_;
  std::mutex mu_;
  bool released_ = false;
  std::vector<std::function<void()>> answers_;
};

// A new leader whose first scan is still loading (here: one job's read is held; in life, a
// backlog of tens of thousands of jobs) assigns what it has loaded once first_assign_after
// passed, instead of nothing until the whole backlog is in. Without the deadline it waits.
TEST_F(SchedulerTest, AssignsWhatItLoadedWhileTheFirstScanIsStillOpen) {
  auto& held = talkVia<HeldReads>(layout_.job("slow"));
  options_.first_assign_after = 100ms;
  addWorker("w1", 4);
  submit("fast");
  submit("slow");
  start();
  ASSERT_TRUE(base::eventually([&] { return isAssigned("fast"); }));
  EXPECT_FALSE(isAssigned("slow"));
  held.release();
  ASSERT_TRUE(base::eventually([&] { return isAssigned("slow"); }));
}

TEST_F(SchedulerTest, WithoutTheDeadlineTheFirstScanIsAssignedInPriorityOrder) {
  auto& held = talkVia<HeldReads>(layout_.job("high"));
  options_.first_assign_after = std::chrono::hours(1);
  addWorker("w1", 1);
  submit("low", 1);
  submit("high", 9);
  start();
  // The scan cannot end while "high" is held, so nothing may go out; release it, and the one
  // slot goes to "high" although "low" was loaded long before.
  ASSERT_TRUE(base::eventually([&] { return scheduler_->snapshot().pending == 1; }));
  EXPECT_TRUE(assignments().empty());
  held.release();
  ASSERT_TRUE(base::eventually([&] { return assignments().size() == 1; }));
  EXPECT_TRUE(isAssigned("high"));
  EXPECT_FALSE(isAssigned("low"));
}

// Job reads go through a window; a window of one still loads and assigns every job.
TEST_F(SchedulerTest, AFetchWindowOfOneLoadsEveryJob) {
  options_.max_fetches_inflight = 1;
  addWorker("w1", 64);
  for (int i = 0; i < 40; ++i) submit("j" + std::to_string(i));
  start();
  ASSERT_TRUE(base::eventually([&] { return assignments().size() == 40; }));
  // And jobs submitted after the first scan, too.
  for (int i = 40; i < 50; ++i) submit("j" + std::to_string(i));
  ASSERT_TRUE(base::eventually([&] { return assignments().size() == 50; }));
}

TEST_F(SchedulerTest, StopIsIdempotent) {
  start();
  scheduler_->stop();
  scheduler_->stop();
  EXPECT_FALSE(scheduler_->snapshot().running);
  EXPECT_TRUE(fenced().empty());
}

}  // namespace
}  // namespace drover::scheduler

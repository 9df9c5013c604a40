#include <atomic>
#include <future>

#include "api/test_fixture.h"
#include "base/clock.h"
#include "coord/fault_injecting.h"
#include "coord/forwarding.h"

namespace drover::api::testing {
namespace {

using coord::Code;
using coord::FaultMode;
using coord::OpKind;
using tasks::State;
using tasks::TaskEvent;

tasks::TaskSpec spec(std::string id, std::string type = "noop") {
  tasks::TaskSpec s;
  s.id = std::move(id);
  s.type = std::move(type);
  return s;
}

class StoreTest : public ApiFixture {};

TEST_F(StoreTest, SubmitThenGet) {
  auto r = store_->submit(spec("s1"));
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_TRUE(r->created);
  auto got = store_->get("s1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->spec, spec("s1"));
  EXPECT_EQ(got->state, State::kPending);
  auto missing = store_->get("nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().failure, Failure::kNotFound);
}

TEST_F(StoreTest, InvalidIdsNeverReachZooKeeper) {
  size_t calls = coord_->callCount(OpKind::kAny);
  for (const std::string& id : std::vector<std::string>{
           "a/b", "..", ".", "", std::string("a\0b", 3), std::string(129, 'x')}) {
    EXPECT_EQ(store_->get(id).error().failure, Failure::kBadRequest);
    EXPECT_EQ(store_->cancel(id).error().failure, Failure::kBadRequest);
    EXPECT_EQ(store_->wait(id, 10ms).error().failure, Failure::kBadRequest);
    EXPECT_EQ(store_->submit(spec(id)).error().failure, Failure::kBadRequest);
  }
  EXPECT_EQ(coord_->callCount(OpKind::kAny), calls);
}

TEST_F(StoreTest, SubmitOnAMissingTreeIsUnavailable) {
  TaskStore other(*coord_, tasks::Layout("/elsewhere"));
  auto r = other.submit(spec("s1"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().failure, Failure::kUnavailable);
}

// A session whose multis are applied at once but, while held, answered only on release: the
// state of a ZooKeeper request in flight.
class HeldMultis final : public coord::ForwardingCoordination {
 public:
  using ForwardingCoordination::ForwardingCoordination;
  void hold() {
    std::lock_guard lock(mu_);
    held_ = true;
  }
  void release() {
    std::vector<std::function<void()>> answers;
    {
      std::lock_guard lock(mu_);
      held_ = false;
      answers.swap(answers_);
    }
    for (auto& a : answers) a();
  }
  size_t multis() const {
    std::lock_guard lock(mu_);
    return multis_;
  }

  coord::Future<std::vector<coord::OpResult>> multi(std::vector<coord::Op> ops) override {
    auto r = inner_.multi(std::move(ops)).get();
    std::lock_guard lock(mu_);
    ++multis_;
    if (!held_) return coord::Future<std::vector<coord::OpResult>>::ready(std::move(r));
    coord::Promise<std::vector<coord::OpResult>> p;
    answers_.push_back([p, r] { p.set(r); });
    return p.future();
  }

 private:
  mutable std::mutex mu_;
  bool held_ = false;
  size_t multis_ = 0;
  std::vector<std::function<void()>> answers_;
};

StoreOptions groupOptions() {
  StoreOptions so;
  so.call_timeout = 5s;
  so.group_inflight = 1;
  return so;
}

TEST_F(StoreTest, ConcurrentSubmitsShareOneMulti) {
  HeldMultis held(*coord_);
  TaskStore store(held, layout_, groupOptions());
  held.hold();
  std::vector<std::future<StoreResult<SubmitResult>>> results;
  results.push_back(std::async(std::launch::async, [&] { return store.submit(spec("g0")); }));
  ASSERT_TRUE(base::eventually([&] { return held.multis() == 1; }));
  for (int i = 1; i < 6; ++i) {
    results.push_back(std::async(std::launch::async,
                                 [&, i] { return store.submit(spec("g" + std::to_string(i))); }));
  }
  // g1..g5 queue behind g0's multi, whose answer is held.
  ASSERT_TRUE(base::eventually([&] { return store.queuedSubmits() == 5; }));
  held.release();
  for (auto& f : results) {
    auto r = f.get();
    ASSERT_TRUE(r) << r.error().detail;
    EXPECT_TRUE(r->created);
  }
  EXPECT_EQ(held.multis(), 2u);  // g0's, then one for g1..g5
  for (int i = 0; i < 6; ++i) {
    std::string id = "g" + std::to_string(i);
    ASSERT_TRUE(statusOf(id)) << id;
    EXPECT_EQ(statusOf(id)->state, State::kPending);
    EXPECT_TRUE(server_->peek(layout_.job(id)).has_value()) << id;
  }
}

TEST_F(StoreTest, AGroupWithAnExistingIdFallsBackToOneMultiEach) {
  HeldMultis held(*coord_);
  TaskStore store(held, layout_, groupOptions());
  ASSERT_TRUE(store.submit(spec("dup")));
  auto other_spec = spec("clash", "echo");
  ASSERT_TRUE(store.submit(spec("clash")));
  held.hold();
  auto first = std::async(std::launch::async, [&] { return store.submit(spec("f0")); });
  ASSERT_TRUE(base::eventually([&] { return held.multis() == 3; }));
  auto dup = std::async(std::launch::async, [&] { return store.submit(spec("dup")); });
  auto clash = std::async(std::launch::async, [&] { return store.submit(other_spec); });
  auto fresh = std::async(std::launch::async, [&] { return store.submit(spec("f1")); });
  ASSERT_TRUE(base::eventually([&] { return store.queuedSubmits() == 3; }));
  held.release();
  ASSERT_TRUE(first.get());
  auto d = dup.get();
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->created);  // an identical repeat: 200
  auto c = clash.get();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().failure, Failure::kConflict);
  auto f = fresh.get();
  ASSERT_TRUE(f);
  EXPECT_TRUE(f->created);  // the group's failure was not its own
  EXPECT_TRUE(statusOf("f1"));
  EXPECT_EQ(statusOf("clash")->spec.type, "noop");
}

TEST_F(StoreTest, AmbiguousGroupMultiIsSettledByReading) {
  TaskStore store(*coord_, layout_, groupOptions());
  coord_->failNext(OpKind::kMulti, Code::kConnectionLoss, FaultMode::kAfterApply);
  auto r = store.submit(spec("amb"));
  EXPECT_EQ(coord_->pendingFaults(), 0u);
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_TRUE(r->created);
  EXPECT_TRUE(statusOf("amb"));
  EXPECT_TRUE(server_->peek(layout_.job("amb")).has_value());
}

// Issue 13.6: a submit whose write is ambiguous (applied, then connection loss) and that then
// finds the task must tell its own write (202) from an earlier request's (200). Both paths: the
// group multi (group_inflight > 0) and one multi per submit.
StoreOptions ambiguityOptions(size_t group_inflight) {
  StoreOptions so;
  so.call_timeout = 2s;
  so.settle_deadline = 2s;
  so.group_inflight = group_inflight;
  return so;
}

// Waits until the wall clock has passed `ms`, so the next submit's creation stamp differs.
void passMillisecond(int64_t ms) {
  ASSERT_TRUE(base::eventually([&] { return base::wallMillis() > ms; }));
}

TEST_F(StoreTest, AmbiguousRepeatOfAnEarlierSubmitIsARepeat) {
  for (size_t inflight : {size_t{0}, size_t{2}}) {
    SCOPED_TRACE(inflight);
    coord::FaultInjectingCoordination faults(*coord_);
    TaskStore store(faults, layout_, ambiguityOptions(inflight));
    const std::string id = "rep" + std::to_string(inflight);
    auto first = store.submit(spec(id));
    ASSERT_TRUE(first) << first.error().detail;
    EXPECT_TRUE(first->created);
    passMillisecond(first->status.submitted_at);
    auto events = countUnder(layout_.events());

    // The repeat's multi fails (the status exists) and is reported as a lost connection.
    faults.ambiguousNext(layout_.status(id));
    auto repeat = store.submit(spec(id));
    EXPECT_EQ(faults.injected(), 1);  // the fault fired
    ASSERT_TRUE(repeat) << repeat.error().detail;
    EXPECT_FALSE(repeat->created);  // 200: the earlier request's task
    EXPECT_EQ(repeat->status.submitted_at, first->status.submitted_at);
    EXPECT_EQ(countUnder(layout_.events()), events);  // nothing written
  }
}

TEST_F(StoreTest, AmbiguousFirstSubmitIsCreated) {
  for (size_t inflight : {size_t{0}, size_t{2}}) {
    SCOPED_TRACE(inflight);
    coord::FaultInjectingCoordination faults(*coord_);
    TaskStore store(faults, layout_, ambiguityOptions(inflight));
    const std::string id = "own" + std::to_string(inflight);
    faults.ambiguousNext(layout_.status(id));
    auto r = store.submit(spec(id));
    EXPECT_EQ(faults.injected(), 1);
    ASSERT_TRUE(r) << r.error().detail;
    EXPECT_TRUE(r->created);  // 202: this call's own write landed
    EXPECT_TRUE(statusOf(id));
  }
}

TEST_F(StoreTest, AmbiguousRepeatAfterTheLeaderMovedTheTaskIsStillARepeat) {
  // The leader rewrote the status (assigned) in between: the stamp it carries over still tells.
  coord::FaultInjectingCoordination faults(*coord_);
  TaskStore store(faults, layout_, ambiguityOptions(0));
  auto first = store.submit(spec("moved"));
  ASSERT_TRUE(first && first->created);
  assign("moved", "w1", State::kAssigned);
  passMillisecond(first->status.submitted_at);
  faults.ambiguousNext(layout_.status("moved"));
  auto repeat = store.submit(spec("moved"));
  EXPECT_EQ(faults.injected(), 1);
  ASSERT_TRUE(repeat) << repeat.error().detail;
  EXPECT_FALSE(repeat->created);
  EXPECT_EQ(repeat->status.state, State::kAssigned);
}

TEST_F(StoreTest, AmbiguousOtherSpecIsAConflict) {
  coord::FaultInjectingCoordination faults(*coord_);
  TaskStore store(faults, layout_, ambiguityOptions(0));
  ASSERT_TRUE(store.submit(spec("other")));
  faults.ambiguousNext(layout_.status("other"));
  auto r = store.submit(spec("other", "echo"));
  EXPECT_EQ(faults.injected(), 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().failure, Failure::kConflict);
}

TEST_F(StoreTest, AmbiguousRepeatOfAnEarlierBatchIsARepeat) {
  coord::FaultInjectingCoordination faults(*coord_);
  TaskStore store(faults, layout_, ambiguityOptions(0));
  auto first = store.submitBatch({spec("rb1"), spec("rb2")});
  ASSERT_TRUE(first) << first.error().detail;
  EXPECT_TRUE(first->created);
  passMillisecond(statusOf("rb1")->submitted_at);
  faults.ambiguousNext(layout_.status("rb1"));
  auto repeat = store.submitBatch({spec("rb1"), spec("rb2")});
  EXPECT_EQ(faults.injected(), 1);
  ASSERT_TRUE(repeat) << repeat.error().detail;
  EXPECT_FALSE(repeat->created);

  // And a batch whose own ambiguous write landed is created.
  faults.ambiguousNext(layout_.status("rb3"));
  auto own = store.submitBatch({spec("rb3"), spec("rb4")});
  EXPECT_EQ(faults.injected(), 2);
  ASSERT_TRUE(own) << own.error().detail;
  EXPECT_TRUE(own->created);
}

// Issue 13.9: flood control. A cap on the pending tasks (jobs), read from the job buckets'
// child counts, never by listing them.
StoreOptions capOptions(size_t cap, std::chrono::milliseconds ttl) {
  StoreOptions so;
  so.call_timeout = 2s;
  so.group_inflight = 0;
  so.max_pending = cap;
  so.pending_ttl = ttl;
  return so;
}

TEST_F(StoreTest, SubmitsPastThePendingCapAreRefusedAndWriteNothing) {
  TaskStore store(*coord_, layout_, capOptions(3, 0ms));  // every submit reads the count
  for (const char* id : {"c1", "c2", "c3"}) ASSERT_TRUE(store.submit(spec(id))) << id;
  auto before = tree();
  size_t listings = coord_->callCount(OpKind::kChildren);
  auto r = store.submit(spec("c4"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().failure, Failure::kTooMany);
  EXPECT_NE(r.error().detail.find("3 tasks are pending, the cap is 3"), std::string::npos)
      << r.error().detail;
  EXPECT_EQ(tree(), before);
  EXPECT_EQ(coord_->callCount(OpKind::kChildren), listings);  // counted without listing

  // A batch that would cross the cap is refused whole, even when part of it would fit.
  assign("c1", "w1", State::kAssigned);  // one job leaves /jobs: 2 pending
  before = tree();
  auto batch = store.submitBatch({spec("d1"), spec("d2")});
  ASSERT_FALSE(batch);
  EXPECT_EQ(batch.error().failure, Failure::kTooMany);
  EXPECT_EQ(tree(), before);
  EXPECT_FALSE(statusOf("d1"));
  // The one that fits goes in.
  ASSERT_TRUE(store.submitBatch({spec("d1")}));
  EXPECT_EQ(store.submit(spec("c5")).error().failure, Failure::kTooMany);
}

TEST_F(StoreTest, PendingCountIsReusedWithinItsTtlAndCountsOwnSubmits) {
  TaskStore store(*coord_, layout_, capOptions(5, 1h));
  size_t exists_before = coord_->callCount(OpKind::kExists);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store.submit(spec("o" + std::to_string(i))));
  // One read of the 256 buckets served every submit; this store's own submits were added.
  EXPECT_EQ(coord_->callCount(OpKind::kExists) - exists_before,
            static_cast<size_t>(tasks::Layout::kJobBuckets));
  EXPECT_EQ(store.submit(spec("o5")).error().failure, Failure::kTooMany);
  EXPECT_FALSE(statusOf("o5"));
}

TEST_F(StoreTest, ZeroMeansNoCap) {
  TaskStore store(*coord_, layout_, capOptions(0, 0ms));
  size_t exists_before = coord_->callCount(OpKind::kExists);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(store.submit(spec("u" + std::to_string(i))));
  EXPECT_EQ(coord_->callCount(OpKind::kExists), exists_before);  // not even counted
}

TEST_F(StoreTest, SessionExpiryDuringSubmitIsUnavailable) {
  coord_->failNext(OpKind::kMulti, Code::kSessionExpired);
  auto r = store_->submit(spec("s1"));
  EXPECT_EQ(coord_->pendingFaults(), 0u);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().failure, Failure::kUnavailable);
  EXPECT_FALSE(statusOf("s1"));
}

TEST_F(StoreTest, TimeoutAfterApplyOnBatchRetryDoesNotDuplicate) {
  // First attempt lands but reports a timeout; the re-read is lost too; the second read settles.
  coord_->failNext(OpKind::kMulti, Code::kOperationTimeout, FaultMode::kAfterApply);
  coord_->failNext(OpKind::kGet, Code::kConnectionLoss);
  auto r = store_->submitBatch({spec("b1"), spec("b2")});
  EXPECT_EQ(coord_->pendingFaults(), 0u);
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_TRUE(r->created);
  EXPECT_EQ(coord_->callCount(OpKind::kMulti), 1u);
  EXPECT_EQ(countStatuses(), 2u);
  EXPECT_EQ(countUnder(layout_.events()), 1u);
}

TEST_F(StoreTest, WaitIsWatchDriven) {
  ASSERT_TRUE(store_->submit(spec("w1")));
  size_t gets = coord_->callCount(OpKind::kGet);
  auto fut = std::async(std::launch::async, [&] { return store_->wait("w1", 20s); });
  ASSERT_TRUE(base::eventually([&] { return coord_->callCount(OpKind::kGet) > gets; }));
  assign("w1", "wk", State::kRunning);  // one change: one more read, still not terminal
  ASSERT_TRUE(base::eventually([&] { return coord_->callCount(OpKind::kGet) >= gets + 2; }));
  EXPECT_EQ(fut.wait_for(100ms), std::future_status::timeout);
  finish("w1", "wk", State::kFailed);
  ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
  auto r = fut.get();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->state, State::kFailed);
  EXPECT_EQ(coord_->callCount(OpKind::kGet) - gets, 3u);
}

TEST_F(StoreTest, WaitOnAMissingTaskIsNotFound) {
  auto r = store_->wait("ghost", 1s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().failure, Failure::kNotFound);
}

TEST_F(StoreTest, CancelGivesUpBoundedlyWhenTheTokenKeepsMissing) {
  // A status that says running on a worker whose assignment is gone (the token moved and the
  // status is stale): cancel re-reads a bounded number of times and reports unavailable.
  ASSERT_TRUE(store_->submit(spec("c1")));
  assign("c1", "wk", State::kRunning);
  ASSERT_TRUE(other_->remove(layout_.assignment("wk", "c1"), coord::kAnyVersion).get());
  auto before = tree();
  auto r = store_->cancel("c1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().failure, Failure::kUnavailable);
  EXPECT_EQ(tree(), before);
}

TEST_F(StoreTest, CancelRetriesWhenTheTokenMoved) {
  ASSERT_TRUE(store_->submit(spec("c2")));
  // The leader assigns between the cancel's read (pending) and its multi: the job delete fails
  // (NoNode, op 0), and the cancel re-reads and deletes the assignment instead.
  coord_->beforeNextOn(OpKind::kMulti, layout_.job("c2"),
                       [&] { assign("c2", "wk", State::kAssigned); });
  size_t multis = coord_->callCount(OpKind::kMulti);
  size_t gets = coord_->callCount(OpKind::kGet);
  auto r = store_->cancel("c2");
  EXPECT_EQ(coord_->pendingFaults(), 0u);  // the assign ran inside the cancel
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->status.state, State::kCancelled);
  EXPECT_FALSE(r->already_finished);
  EXPECT_EQ(r->status.worker, "wk");  // cancelled as the re-read found it: assigned
  EXPECT_EQ(coord_->callCount(OpKind::kMulti) - multis, 2u);  // the fenced one, then the retry
  EXPECT_EQ(coord_->callCount(OpKind::kGet) - gets, 2u);      // pending, then assigned
  EXPECT_EQ(statusOf("c2")->state, State::kCancelled);
  EXPECT_FALSE(server_->peek(layout_.assignment("wk", "c2")));
  EXPECT_FALSE(server_->peek(layout_.job("c2")));
}

TEST_F(StoreTest, CancelAmbiguousWriteSettles) {
  ASSERT_TRUE(store_->submit(spec("c3")));
  coord_->failNext(OpKind::kMulti, Code::kConnectionLoss, FaultMode::kAfterApply);
  auto r = store_->cancel("c3");
  EXPECT_EQ(coord_->pendingFaults(), 0u);
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->status.state, State::kCancelled);
  EXPECT_FALSE(r->already_finished);
  EXPECT_EQ(countUnder(layout_.events()), 2u);  // submit + one cancel, not two
}

TEST_F(StoreTest, ListSkipsNothingAcrossPipelineChunks) {
  StoreOptions so;
  so.pipeline = 3;
  TaskStore small(*coord_, layout_, so);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(small.submit(spec("t" + std::to_string(i))));
  std::vector<std::string> seen;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    auto r = small.list(std::nullopt, 4, cursor);
    ASSERT_TRUE(r);
    for (const auto& t : r->tasks) seen.push_back(t.spec.id);
    if (!r->next) break;
    cursor = *r->next;
  }
  ASSERT_EQ(seen.size(), 10u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
}

TEST_F(StoreTest, ClusterCountsAreCached) {
  StoreOptions so;
  so.counts_ttl = 60s;
  TaskStore cached(*coord_, layout_, so);
  ASSERT_TRUE(cached.submit(spec("k1")));
  auto a = cached.cluster();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->counts[State::kPending], 1u);
  ASSERT_TRUE(cached.submit(spec("k2")));
  auto b = cached.cluster();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->counts[State::kPending], 1u);  // within the TTL: the cached scan
  auto fresh = store_->cluster();             // counts_ttl 0 in the fixture
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->counts[State::kPending], 2u);
}

// --- EventFeed ---

class FeedTest : public ApiFixture {
 protected:
  size_t feedCapacity() override { return 3; }
  void append(const std::string& id, State state = State::kSucceeded) {
    ASSERT_TRUE(other_->create(tasks::eventOp(layout_, {TaskEvent{id, state, 1, "", 1}})).get());
  }
};

TEST_F(FeedTest, DeliversNewRecordsInOrderWithoutHistory) {
  // Records before the subscriber existed but after the feed started are delivered; the feed
  // started on an empty log.
  auto sub = feed_->subscribe();
  append("a");
  append("b");
  auto e1 = sub->next(5s);
  auto e2 = sub->next(5s);
  ASSERT_TRUE(e1 && e2);
  EXPECT_EQ(e1->id, "a");
  EXPECT_EQ(e2->id, "b");

  // A feed started later does not replay a and b.
  EventFeed late(*feed_coord_, layout_);
  late.start();
  auto s2 = late.subscribe();
  EXPECT_TRUE(late.ready());
  append("c");
  auto e3 = s2->next(5s);
  ASSERT_TRUE(e3);
  EXPECT_EQ(e3->id, "c");
  late.stop();
  EXPECT_TRUE(s2->closed());
}

TEST_F(FeedTest, ResumesAfterAPositionWithoutMissesOrRepeats) {
  auto sub = feed_->subscribe();
  append("a");
  append("b");
  auto e1 = sub->next(5s);
  auto e2 = sub->next(5s);
  ASSERT_TRUE(e1 && e2);
  EXPECT_LT(e1->position, e2->position);
  EXPECT_EQ(parseEventPosition(e1->position.text())->record, e1->position.record);
  append("c");
  ASSERT_TRUE(sub->next(5s));

  auto resumed = feed_->subscribe("", e1->position);
  EXPECT_FALSE(resumed->gap());
  append("d");
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto e = resumed->next(5s);
    ASSERT_TRUE(e);
    ids.push_back(e->id);
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"b", "c", "d"}));
  EXPECT_FALSE(resumed->next(100ms));
}

TEST_F(FeedTest, ResumingFromATrimmedRecordReportsAGap) {
  auto sub = feed_->subscribe();
  append("a");
  append("b");
  auto e1 = sub->next(5s);
  ASSERT_TRUE(e1 && sub->next(5s));
  auto records = other_->children(layout_.events(), nullptr).get();
  ASSERT_TRUE(records);
  std::sort(records->begin(), records->end());
  ASSERT_TRUE(other_->remove(coord::join(layout_.events(), records->front()), -1).get());
  auto resumed = feed_->subscribe("", e1->position);
  EXPECT_TRUE(resumed->gap());
  auto e = resumed->next(5s);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->id, "b");
}

TEST(EventPositionTest, ParsesOnlyItsOwnForm) {
  EXPECT_EQ(parseEventPosition("12.3")->record, 12);
  EXPECT_EQ(parseEventPosition("12.3")->index, 3);
  for (const char* bad : {"", ".", "1.", ".1", "1", "a.b", "-1.0", "1.-1", "1.2.3", "1 .2",
                          "99999999999999999999.0"}) {
    EXPECT_FALSE(parseEventPosition(bad)) << bad;
  }
}

TEST_F(FeedTest, WatchDrivenNotPolling) {
  auto sub = feed_->subscribe();
  append("a");
  ASSERT_TRUE(sub->next(5s));
  // The listing that found "a" armed the next watch: the feed now waits on it.
  ASSERT_TRUE(base::eventually([&] { return server_->watchCount() == 1; }));
  size_t calls = feed_coord_->callCount(OpKind::kChildren);
  // Idle: nothing to read, so nothing may be read, over many of its min_interval (50 ms) and
  // past its first retry delay (100 ms). Fails as soon as a listing is taken.
  EXPECT_FALSE(
      base::eventually([&] { return feed_coord_->callCount(OpKind::kChildren) != calls; }, 500ms));
  // And it was not merely stopped: one change costs one listing, which delivers it.
  append("b");
  auto e = sub->next(5s);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->id, "b");
  EXPECT_EQ(feed_coord_->callCount(OpKind::kChildren), calls + 1);
}

TEST_F(FeedTest, IdleFeedReadsNothingAndResumesWithoutReplay) {
  // No subscriber: records come and go without a single read of the log.
  append("unheard");
  append("unheard-2");
  EXPECT_FALSE(feed_->ready());
  EXPECT_EQ(feed_coord_->callCount(OpKind::kChildren), 0u);
  EXPECT_EQ(feed_coord_->callCount(OpKind::kGet), 0u);

  // The first subscriber wakes it; what was written before is not replayed.
  auto sub = feed_->subscribe();
  EXPECT_TRUE(feed_->ready());
  append("heard");
  auto e = sub->next(5s);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->id, "heard");

  // The last subscriber leaves: after the watch's last fire the feed reads nothing more.
  sub->close();
  append("after-close");  // fires the armed watch once; the feed sees nobody and goes idle
  ASSERT_TRUE(base::eventually([&] { return !feed_->ready(); }));
  size_t lists = feed_coord_->callCount(OpKind::kChildren);
  append("idle-again");
  append("idle-again-2");
  EXPECT_EQ(feed_coord_->callCount(OpKind::kChildren), lists);

  // And a new subscriber starts after the newest record.
  auto again = feed_->subscribe();
  append("fresh");
  auto f = again->next(5s);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->id, "fresh");
}

class BurstFeedTest : public FeedTest {
 protected:
  size_t feedCapacity() override { return 1024; }
  // Long enough that even a loaded machine writes the burst within one interval.
  std::chrono::milliseconds feedMinInterval() override { return 1s; }
};

TEST_F(BurstFeedTest, OneListingServesABurstOfRecords) {
  // Records written faster than min_interval are picked up by few listings, not one each.
  auto sub = feed_->subscribe();
  size_t lists = feed_coord_->callCount(OpKind::kChildren);
  for (int i = 0; i < 20; ++i) append("burst-" + std::to_string(i));
  for (int i = 0; i < 20; ++i) {
    auto e = sub->next(5s);
    ASSERT_TRUE(e) << i;
    EXPECT_EQ(e->id, "burst-" + std::to_string(i));
  }
  EXPECT_LE(feed_coord_->callCount(OpKind::kChildren) - lists, 3u);
}

TEST_F(FeedTest, SlowSubscriberIsDroppedOthersContinue) {
  auto slow = feed_->subscribe();
  auto fast = feed_->subscribe();
  for (int i = 0; i < 5; ++i) {
    append("e" + std::to_string(i));
    auto e = fast->next(5s);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->id, "e" + std::to_string(i));
  }
  EXPECT_TRUE(slow->dropped());
  EXPECT_TRUE(slow->closed());
  EXPECT_FALSE(fast->closed());
  EXPECT_EQ(feed_->subscribers(), 1u);
}

TEST_F(FeedTest, MultiEventRecordsAndUnreadableOnesAreHandled) {
  auto sub = feed_->subscribe();
  ASSERT_TRUE(
      other_
          ->create(
              {layout_.events() + "/e-", "not json", coord::CreateMode::kPersistentSequential, {}})
          .get());
  ASSERT_TRUE(other_
                  ->create(tasks::eventOp(layout_, {TaskEvent{"x", State::kPending, 0, "", 1},
                                                    TaskEvent{"y", State::kPending, 0, "", 1}}))
                  .get());
  auto a = sub->next(5s);
  auto b = sub->next(5s);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->id, "x");
  EXPECT_EQ(b->id, "y");
}

TEST_F(FeedTest, RearmsAfterSessionExpiry) {
  auto sub = feed_->subscribe();
  feed_coord_->expireSession(true);
  // The new session's feed must see records created after the rebuild.
  ASSERT_TRUE(base::eventually([&] {
    append("after");
    auto e = sub->next(200ms);
    return e && e->id == "after";
  }));
}

TEST_F(FeedTest, RecoversFromAFailedListing) {
  auto sub = feed_->subscribe();
  feed_coord_->failNext(OpKind::kChildren, Code::kConnectionLoss);
  append("a");  // the watch fires; the listing fails; the retry picks it up
  auto e = sub->next(5s);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->id, "a");
  EXPECT_EQ(feed_coord_->pendingFaults(), 0u);
}

TEST_F(FeedTest, SkipsRecordsTrimmedBeforeTheyWereRead) {
  auto sub = feed_->subscribe();
  // The feed has listed the record and is about to read it when the leader trims it.
  std::atomic<int64_t> trimmed{-1};
  feed_coord_->beforeNextOn(OpKind::kGet, layout_.events() + "/", [&] {
    for (const auto& [path, data] : tree()) {
      if (path.rfind(layout_.events() + "/", 0) == 0) {
        EXPECT_TRUE(other_->remove(path, coord::kAnyVersion).get());
        trimmed = coord::sequenceOf(coord::baseName(path));
      }
    }
  });
  append("gone");
  ASSERT_TRUE(base::eventually([&] { return feed_coord_->pendingFaults() == 0; }));
  ASSERT_GE(trimmed.load(), 0);
  // Skipped: the feed moves past it at once (an error there would leave it behind until a
  // retry's listing, which no longer shows the record).
  ASSERT_TRUE(base::eventually([&] { return feed_->lastSeen() == trimmed.load(); }));
  // And a later record still arrives, with nothing before it.
  append("kept");
  auto e = sub->next(5s);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->id, "kept");
}

}  // namespace
}  // namespace drover::api::testing

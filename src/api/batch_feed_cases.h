#pragma once

// The API's views beyond one task, as cases of the BatchStoreSuite: the event feed over v2
// records (and a resume from far behind), webhooks of v2 tasks, worker counts and the pending
// cap. Included after api/batch_store_suite.h, so they run on the fake tree (unit) and on a real
// ZooKeeper (integration) alike.

#include "api/batch_store_suite.h"

namespace drover::api::testing {

TEST_P(BatchStoreSuite, EventFeedDecodesV2Records) {
  auto feed_coord = env_->connect();
  EventFeedOptions fo;
  fo.min_interval = 1ms;
  EventFeed feed(*feed_coord, layout_, fo);
  feed.start();
  auto sub = feed.subscribe();
  auto r = store_->submitBatch({spec("e0"), spec("")});
  ASSERT_TRUE(r);
  registerWorker("wk");
  const std::string chunk = assign({refOf("e0"), refOf(r->ids[1])}, "wk");
  ASSERT_TRUE(commit("wk", chunk, {refOf("e0"), refOf(r->ids[1])}));
  std::vector<std::pair<std::string, State>> got;
  std::vector<EventPosition> positions;
  while (got.size() < 6) {
    auto e = sub->next(5s);
    ASSERT_TRUE(e) << "after " << got.size() << " events";
    got.emplace_back(e->id, e->state);
    positions.push_back(e->position);
  }
  const std::vector<std::pair<std::string, State>> want{
      {"e0", State::kPending},       {r->ids[1], State::kPending}, {"e0", State::kAssigned},
      {r->ids[1], State::kAssigned}, {"e0", State::kSucceeded},    {r->ids[1], State::kSucceeded}};
  EXPECT_EQ(got, want);
  EXPECT_EQ(positions[1].index, 1);  // positions count the tasks of a record
  feed.stop();
}

// A resume from far behind on v2 (the webhook dispatcher after a pause): one record's
// EventGroups hold more events than a subscriber's queue. The replay comes back truncated with
// a queue's worth (it used to be dropped with nothing queued, so the same resume overflowed
// again, forever, while trimming overtook its position), and resuming after the last event
// popped reaches the end: every terminal event once, in order, no gap.
TEST_P(BatchStoreSuite, ResumeFromFarBehindAdvancesAQueueAtATime) {
  ASSERT_TRUE(coord::ensurePath(*other_, layout_.events()));
  const std::string batch = tasks::makeBatchName(base::wallMillis(), 7);
  constexpr uint32_t kTasks = 700;
  for (int rec = 0; rec < 3; ++rec) {
    tasks::EventGroup assigned, done;
    assigned.batch = done.batch = batch;
    assigned.state = State::kAssigned;
    done.state = State::kSucceeded;
    for (uint32_t i = 0; i < kTasks; ++i) {
      assigned.indices.push_back(rec * kTasks + i);
      done.indices.push_back(rec * kTasks + i);
    }
    ASSERT_TRUE(other_->create(tasks::v2::eventGroupsOp(layout_, {assigned, done})).get());
  }
  auto feed_coord = env_->connect();
  EventFeedOptions fo;
  fo.min_interval = 1ms;
  fo.queue_capacity = 500;
  EventFeed feed(*feed_coord, layout_, fo);
  feed.start();
  EventPosition after{-1, 0};
  std::vector<uint32_t> seen;
  int resumes = 0;
  while (seen.size() < 3 * kTasks && resumes < 20) {
    ++resumes;
    auto sub = feed.subscribe("", after, Want::kTerminal);
    EXPECT_FALSE(sub->dropped());
    if (resumes > 1) {
      EXPECT_FALSE(sub->gap());
    }
    while (auto e = sub->next(sub->closed() ? 0ms : 200ms)) {
      EXPECT_EQ(e->state, State::kSucceeded);
      seen.push_back(e->ref.index);
      after = e->position;
    }
    sub->close();
  }
  ASSERT_EQ(seen.size(), 3u * kTasks) << "after " << resumes << " resumes";
  for (uint32_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], i);
  EXPECT_EQ(resumes, 5);  // 2,100 events, 500 a queue: four truncated replays, then live
  feed.stop();
}

// The webhook dispatcher's subscription (Want::kCallbacks) does not read the records named as
// holding no callback ("n-"), replayed or live, unless another subscriber needs them read; it
// gets nothing from them either way, and idleThrough() tells it how far the feed went past.
TEST_P(BatchStoreSuite, ACallbacksOnlySubscriberSkipsRecordsThatNeedNoWebhook) {
  ASSERT_TRUE(coord::ensurePath(*other_, layout_.events()));
  const std::string batch = tasks::makeBatchName(base::wallMillis(), 9);
  uint32_t next = 0;
  auto write = [&](bool may_call_back) {
    tasks::EventGroup done;
    done.batch = batch;
    done.state = State::kSucceeded;
    done.indices = {next++};
    auto created = other_->create(tasks::v2::eventGroupsOp(layout_, {done}, may_call_back)).get();
    EXPECT_TRUE(created);
    return created ? coord::sequenceOf(*created) : -1;
  };
  write(false);
  write(true);  // index 1
  const int64_t third = write(false);
  auto feed_coord = env_->connect();
  Counting counted(*feed_coord);
  EventFeedOptions fo;
  fo.min_interval = 1ms;
  EventFeed feed(counted, layout_, fo);
  feed.start();
  auto readSkipped = [&] {
    for (const auto& path : counted.gotSince(0)) {
      if (!tasks::v2::mayHoldCallbacks(path.substr(path.rfind('/') + 1))) return true;
    }
    return false;
  };
  auto sub = feed.subscribe("", EventPosition{-1, 0}, Want::kCallbacks);
  auto e = sub->next(2s);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->ref.index, 1u);
  EXPECT_FALSE(sub->next(50ms));
  EXPECT_EQ(sub->idleThrough(), third);
  EXPECT_FALSE(readSkipped());
  // Live: an "n-" record is passed by unread, an "e-" one delivered.
  write(false);
  const int64_t fifth = write(true);  // index 4
  e = sub->next(5s);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->ref.index, 4u);
  ASSERT_TRUE(base::eventually([&] { return sub->idleThrough() >= fifth; }));
  EXPECT_FALSE(readSkipped());
  // With a subscriber that wants everything, every record is read; the webhook one still gets
  // nothing from an "n-" record.
  auto all = feed.subscribe();
  write(false);  // index 5
  e = all->next(5s);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->ref.index, 5u);
  EXPECT_TRUE(readSkipped());
  EXPECT_FALSE(sub->next(50ms));
  feed.stop();
}

TEST_P(BatchStoreSuite, WebhooksOfV2TasksComeFromTheBatchRecord) {
  std::mutex mu;
  std::vector<tasks::Json> posted;
  httplib::Server receiver;
  receiver.Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    posted.push_back(tasks::Json::parse(req.body));
    res.status = 200;
  });
  const int port = receiver.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread serving([&] { receiver.listen_after_bind(); });
  struct Stop {
    httplib::Server& s;
    std::thread& t;
    ~Stop() {
      s.stop();
      t.join();
    }
  } stop{receiver, serving};
  ASSERT_TRUE(coord::ensurePath(*other_, layout_.epoch()));
  auto quiet = spec("quiet");
  auto loud = spec("loud");
  loud.callback_url = fmt::format("http://127.0.0.1:{}/hook", port);
  ASSERT_TRUE(store_->submitBatch({quiet, loud}));
  registerWorker("wk");
  const std::string chunk = assign({refOf("quiet"), refOf("loud")}, "wk");
  ASSERT_TRUE(commit("wk", chunk, {refOf("quiet"), refOf("loud")}));
  auto feed_coord = env_->connect();
  EventFeedOptions fo;
  fo.min_interval = 1ms;
  EventFeed feed(*feed_coord, layout_, fo);
  feed.start();
  WebhookOptions wo;
  wo.save_interval = 50ms;
  WebhookDispatcher dispatcher(*other_, layout_, feed, 0, wo);
  dispatcher.start();
  ASSERT_TRUE(base::eventually([&] {
    std::lock_guard lock(mu);
    return !posted.empty();
  }));
  // Deliveries go in log order: "quiet" came first in the same record and was not posted.
  ASSERT_TRUE(base::eventually([&] { return dispatcher.stats().lag == 0; }));
  dispatcher.stop();
  feed.stop();
  std::lock_guard lock(mu);
  ASSERT_EQ(posted.size(), 1u);
  EXPECT_EQ(posted[0].value("id", ""), "loud");
  EXPECT_EQ(posted[0].value("state", ""), "succeeded");
}

// GET /v1/workers on v2: `assigned` counts the tasks a worker's chunks hold, not the chunks.

// GET /v1/workers on v2: `assigned` counts the tasks a worker's chunks hold, not the chunks.
TEST_P(BatchStoreSuite, WorkersCountTasksNotChunks) {
  auto sub = store_->submitBatch({spec(""), spec(""), spec(""), spec(""), spec("")});
  ASSERT_TRUE(sub) << sub.error().detail;
  std::vector<TaskRef> refs;
  for (const auto& id : sub->ids) refs.push_back(refOf(id));
  registerWorker("wk");
  registerWorker("idle");
  const std::string first = assign({refs[0], refs[1], refs[2]}, "wk");
  assign({refs[3], refs[4]}, "wk");
  auto view = store_->workers();
  ASSERT_TRUE(view) << view.error().detail;
  std::map<std::string, WorkerView> by_id;
  for (const auto& w : view->workers) by_id[w.info.id] = w;
  ASSERT_EQ(by_id.size(), 2u);
  EXPECT_EQ(by_id["wk"].assigned, 5u);
  EXPECT_EQ(by_id["wk"].running,  // the ones in its slots
            std::min<size_t>(5, static_cast<size_t>(std::max(0, by_id["wk"].info.slots))));
  EXPECT_EQ(by_id["idle"].assigned, 0u);
  ASSERT_TRUE(commit("wk", first, {refs[0], refs[1]}));
  view = store_->workers();
  ASSERT_TRUE(view);
  for (const auto& w : view->workers) {
    if (w.info.id == "wk") {
      EXPECT_EQ(w.assigned, 3u);
    }
  }
}

// max_pending_tasks on v2: the store admits against the leader's published waiting count (in
// /pending's data) plus what it admitted itself since reading it; past the cap, 429.
TEST_P(BatchStoreSuite, MaxPendingRefusesPastTheLeadersWaitingCount) {
  options_.max_pending = 10;
  options_.pending_ttl = 1h;  // one read of the count for the whole test
  BatchStore capped(*counting_, layout_, options_);
  auto publish = [&](uint64_t waiting) {
    publishCount(tasks::WaitingCount{waiting, base::wallMillis()});
  };
  publish(7);
  auto first = capped.submitBatch({spec(""), spec("")});  // 7 + 2 <= 10
  ASSERT_TRUE(first) << first.error().detail;
  auto over = capped.submitBatch({spec(""), spec("")});  // 9 + 2 > 10
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().failure, Failure::kTooMany);
  EXPECT_NE(over.error().detail.find("cap is 10"), std::string::npos) << over.error().detail;
  ASSERT_TRUE(capped.submit(spec("")));  // exactly 10
  auto single = capped.submit(spec("one-more"));
  ASSERT_FALSE(single);
  EXPECT_EQ(single.error().failure, Failure::kTooMany);
  EXPECT_FALSE(capped.reader().resolve("one-more").value_or(std::nullopt));  // nothing written
  // A fresh node reads a lower count (the backlog drained): it admits again.
  publish(0);
  BatchStore drained(*counting_, layout_, options_);
  EXPECT_TRUE(drained.submitBatch(std::vector<tasks::TaskSpec>(10, spec(""))));
}

// Before any leader has published a count (a new cluster, or a leader still scanning a flood),
// submits go on and the count is read again only a ttl later: they used to re-read it each, one
// at a time, so that single submits queued behind each other's reads.
TEST_P(BatchStoreSuite, WithNoPublishedCountTheCountIsReadOncePerTtl) {
  options_.max_pending = 10;
  options_.pending_ttl = 1h;
  BatchStore capped(*counting_, layout_, options_);
  const size_t from = counting_->gets();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(capped.submit(spec("")));
  auto paths = counting_->gotSince(from);
  EXPECT_EQ(std::count(paths.begin(), paths.end(), layout_.pendingRoot()), 1);
}

// /v1/cluster under a large backlog: past exact_count_batches unfinished batches it reads no
// pending state; waiting, delayed and held come from the leader's published counts, and the
// ended tasks of unfinished batches from their outcomes. Before the leader has counted, it counts
// exactly whatever the size.
TEST_P(BatchStoreSuite, PastTheExactLimitTheClusterCountsTakeTheLeadersFigures) {
  options_.exact_count_batches = 1;
  BatchStore large(*counting_, layout_, options_);
  ASSERT_TRUE(large.submitBatch({spec("a"), spec("b")}));
  ASSERT_TRUE(large.submit(spec("c")));
  tasks::TaskSpec later = spec("later");
  later.run_at = base::wallMillis() + 3'600'000;
  ASSERT_TRUE(large.submit(later));
  registerWorker("wk");
  const std::string chunk = assign({refOf("a"), refOf("b")}, "wk");
  ASSERT_TRUE(commit("wk", chunk, {refOf("a")}));  // b is still held: its batch is unfinished
  auto pendingStatesRead = [&](size_t from) {
    auto paths = counting_->gotSince(from);
    return std::count_if(paths.begin(), paths.end(), [&](const std::string& p) {
      return p.rfind(layout_.pendingRoot() + "/", 0) == 0;
    });
  };

  size_t from = counting_->gets();
  auto exact = large.cluster();  // 3 unfinished batches, but no published count yet
  ASSERT_TRUE(exact) << exact.error().detail;
  EXPECT_EQ(exact->counts[State::kWaiting], 1u);  // `later`, as GET shows it
  EXPECT_EQ(exact->counts[State::kPending], 1u);
  EXPECT_EQ(exact->counts[State::kAssigned], 1u);
  EXPECT_EQ(exact->counts[State::kSucceeded], 1u);
  EXPECT_EQ(pendingStatesRead(from), 3);

  publishCount(tasks::WaitingCount{40, base::wallMillis(), 5, 7});
  from = counting_->gets();
  auto published = large.cluster();
  ASSERT_TRUE(published) << published.error().detail;
  EXPECT_EQ(published->counts[State::kWaiting], 5u);
  EXPECT_EQ(published->counts[State::kPending], 35u);
  EXPECT_EQ(published->counts[State::kAssigned], 7u);  // no worker reports a run
  EXPECT_EQ(published->counts[State::kRunning], 0u);
  EXPECT_EQ(published->counts[State::kSucceeded], 1u);  // a's outcome, in an unfinished batch
  EXPECT_EQ(pendingStatesRead(from), 0);
}

// Below the exact limit, dependents the leader holds back (its published `blocked`) count as
// waiting, as GET shows them, not as pending.
TEST_P(BatchStoreSuite, BlockedDependentsCountAsWaitingInExactCounts) {
  BatchStore store(*counting_, layout_, options_);
  tasks::TaskSpec first = spec("first");
  tasks::TaskSpec second = spec("second");
  second.depends_on = {"#0"};
  ASSERT_TRUE(store.submitBatch({first, second}));
  auto before = store.cluster();  // no leader has counted: both look assignable
  ASSERT_TRUE(before) << before.error().detail;
  EXPECT_EQ(before->counts[State::kPending], 2u);
  EXPECT_EQ(before->counts[State::kWaiting], 0u);
  tasks::WaitingCount count{2, base::wallMillis(), 1, 0};
  count.blocked = 1;
  publishCount(count);
  BatchStore fresh(*counting_, layout_, options_);  // no cached count
  auto after = fresh.cluster();
  ASSERT_TRUE(after) << after.error().detail;
  EXPECT_EQ(after->counts[State::kPending], 1u);
  EXPECT_EQ(after->counts[State::kWaiting], 1u);
}

}  // namespace drover::api::testing

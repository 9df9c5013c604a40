#pragma once

// Reading tasks back over protocol v2 records, as cases of the BatchStoreSuite: one task in
// every state (and what a finished one costs), pages newest first with filters, and the long
// poll. Included after api/batch_store_suite.h, so they run on the fake tree (unit) and on a real
// ZooKeeper (integration) alike.

#include "api/batch_store_suite.h"

namespace drover::api::testing {

TEST_P(BatchStoreSuite, GetInEveryStateAndFinishedCostsTwoReads) {
  auto sub = store_->submitBatch({spec("w0"), spec(""), spec("")});
  ASSERT_TRUE(sub) << sub.error().detail;
  const TaskRef r0 = refOf("w0"), r1 = refOf(sub->ids[1]), r2 = refOf(sub->ids[2]);
  EXPECT_EQ(store_->get("w0")->state, State::kPending);
  registerWorker("wk");
  const std::string chunk = assign({r0, r1, r2}, "wk");
  auto held = store_->get("w0");
  ASSERT_TRUE(held) << held.error().detail;
  EXPECT_EQ(held->state, State::kAssigned);
  EXPECT_EQ(held->worker, "wk");
  EXPECT_EQ(held->attempts, 1);
  registerWorker("wk", {{sub->ids[1], 1234}});
  auto running = store_->get(sub->ids[1]);
  ASSERT_TRUE(running);
  EXPECT_EQ(running->state, State::kRunning);
  EXPECT_EQ(running->started_at, 1234);
  auto counts = store_->cluster();
  ASSERT_TRUE(counts) << counts.error().detail;
  EXPECT_EQ(counts->counts[State::kAssigned], 2u);
  EXPECT_EQ(counts->counts[State::kRunning], 1u);
  EXPECT_EQ(counts->counts[State::kPending], 0u);
  ASSERT_TRUE(commit("wk", chunk, {r0, r1}));
  ASSERT_TRUE(commit("wk", chunk, {r2}, State::kFailed));
  auto done = store_->get("w0");
  ASSERT_TRUE(done) << done.error().detail;
  EXPECT_EQ(done->state, State::kSucceeded);
  EXPECT_EQ(done->result, (tasks::Json{{"ok", 0}}));
  EXPECT_EQ(store_->get(sub->ids[2])->state, State::kFailed);
  counts = store_->cluster();
  ASSERT_TRUE(counts);
  EXPECT_EQ(counts->counts[State::kSucceeded], 2u);
  EXPECT_EQ(counts->counts[State::kFailed], 1u);
  EXPECT_EQ(counts->counts[State::kAssigned], 0u);
  // A finished task of a batch whose record is cached: the listing and one result record.
  BatchStore fresh(*counting_, layout_, options_);
  ASSERT_TRUE(fresh.get(sub->ids[1]));  // reads and caches the batch record
  const int before = counting_->reads;
  auto again = fresh.get(sub->ids[1]);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->state, State::kSucceeded);
  EXPECT_LE(counting_->reads - before, 2);
  EXPECT_EQ(store_->get("nope").error().failure, Failure::kNotFound);
  EXPECT_EQ(store_->get(tasks::generatedId({r0.batch, 7})).error().failure, Failure::kNotFound);
}

// The cache of batch and result records is bounded by the memory the decoded records take, not
// by their encoded size (a decoded spec is ~10x its encoding): with room for one batch of 100
// tasks, reading a second one evicts the first, which costs a read again.
TEST_P(BatchStoreSuite, TheRecordCacheIsBoundedByDecodedSize) {
  std::vector<std::string> names;
  for (int b = 0; b < 2; ++b) {
    std::vector<tasks::TaskSpec> specs(100, spec(""));
    auto r = store_->submitBatch(specs);
    ASSERT_TRUE(r) << r.error().detail;
    names.push_back(refOf(r->ids[0]).batch);
  }
  ASSERT_NE(names[0], names[1]);
  StoreOptions small = options_;
  // One batch of 100 no-op specs decodes to more than 100 specs' structs, two to less than 3.
  small.record_cache_bytes = 150 * sizeof(tasks::TaskSpec) + 64 * 1024 / 4;
  BatchReader reader(*counting_, layout_, small);
  auto reads = [&](BatchReader& from, const std::string& name) {
    const int before = counting_->reads;
    auto record = from.batch(name);
    EXPECT_TRUE(record && *record) << name;
    return counting_->reads - before;
  };
  EXPECT_EQ(reads(reader, names[0]), 1);
  EXPECT_EQ(reads(reader, names[0]), 0);  // cached
  EXPECT_EQ(reads(reader, names[1]), 1);  // evicts the first
  EXPECT_EQ(reads(reader, names[1]), 0);
  EXPECT_EQ(reads(reader, names[0]), 1);
  // The default budget keeps both.
  BatchReader roomy(*counting_, layout_, options_);
  for (const auto& n : names) EXPECT_EQ(reads(roomy, n), 1);
  for (const auto& n : names) EXPECT_EQ(reads(roomy, n), 0);
}

TEST_P(BatchStoreSuite, ListNewestFirstWithFiltersAndPaging) {
  std::vector<std::string> order;  // submit order
  for (int b = 0; b < 3; ++b) {
    // Batch names sort by their millisecond: start each batch in a later one.
    const int64_t t = base::wallMillis();
    ASSERT_TRUE(base::eventually([&] { return base::wallMillis() > t; }));
    std::vector<tasks::TaskSpec> specs{spec(""), spec("", "echo"), spec("")};
    auto r = store_->submitBatch(specs);
    ASSERT_TRUE(r) << r.error().detail;
    order.insert(order.end(), r->ids.begin(), r->ids.end());
  }
  ASSERT_TRUE(store_->cancel(order[0]));
  std::vector<std::string> seen;
  std::optional<NewestCursor> after;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = store_->listNewest(std::nullopt, 4, after);
    ASSERT_TRUE(page) << page.error().detail;
    for (const auto& t : page->tasks) seen.push_back(t.spec.id);
    if (!page->next) break;
    auto dash = page->next->find('-');
    after = NewestCursor{std::stoll(page->next->substr(0, dash)), page->next->substr(dash + 1)};
  }
  EXPECT_EQ(seen, std::vector<std::string>(order.rbegin(), order.rend()));
  auto echoes = store_->listNewest(std::nullopt, 10, std::nullopt, TaskFilter{"echo", ""});
  ASSERT_TRUE(echoes);
  ASSERT_EQ(echoes->tasks.size(), 3u);
  EXPECT_EQ(echoes->tasks[0].spec.id, order[7]);
  auto cancelled = store_->listNewest(State::kCancelled, 10, std::nullopt);
  ASSERT_TRUE(cancelled);
  ASSERT_EQ(cancelled->tasks.size(), 1u);
  EXPECT_EQ(cancelled->tasks[0].spec.id, order[0]);
  auto oldest = store_->list(State::kPending, 2, "");
  ASSERT_TRUE(oldest);
  ASSERT_EQ(oldest->tasks.size(), 2u);
  EXPECT_EQ(oldest->tasks[0].spec.id, order[1]);
  ASSERT_TRUE(oldest->next);
  auto rest = store_->list(State::kPending, 100, *oldest->next);
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->tasks.size(), 6u);
  auto counts = store_->cluster();
  ASSERT_TRUE(counts) << counts.error().detail;
  EXPECT_EQ(counts->counts[State::kPending], 8u);
  EXPECT_EQ(counts->counts[State::kCancelled], 1u);
}

TEST_P(BatchStoreSuite, WaitReturnsOnCompletion) {
  ASSERT_TRUE(store_->submit(spec("waited")));
  registerWorker("wk");
  const std::string chunk = assign({refOf("waited")}, "wk");
  const auto start = std::chrono::steady_clock::now();
  auto waiting = std::async(std::launch::async, [&] { return store_->wait("waited", 20s); });
  ASSERT_EQ(waiting.wait_for(100ms), std::future_status::timeout);  // it waits
  ASSERT_TRUE(commit("wk", chunk, {refOf("waited")}));
  auto r = waiting.get();
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->state, State::kSucceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  auto timed = store_->wait("waited", 10ms);
  ASSERT_TRUE(timed);
  EXPECT_EQ(timed->state, State::kSucceeded);
}

}  // namespace drover::api::testing

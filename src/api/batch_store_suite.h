#pragma once

// BatchStore's behaviour (api/batch_store.h, protocol v2) as one parameterized gtest suite: it
// runs against the fake tree (src/api/batch_store_test.cc, unit) and against a real ZooKeeper
// (tests/batch_store_zk_test.cc, integration). A second session plays the leader and the worker
// with tasks::v2::Builder. Each test works under its own random root.
//
// Include it in exactly one file per test binary, then instantiate:
//   INSTANTIATE_TEST_SUITE_P(Fake, BatchStoreSuite, ::testing::Values(BatchParam{...}), ...);

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <functional>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "api/batch_store.h"
#include "api/event_feed.h"
#include "api/http.h"
#include "api/webhook_dispatcher.h"
#include "base/clock.h"
#include "base/eventually.h"
#include "base/ids.h"
#include "base/rfc3339.h"
#include "coord/fault_injecting.h"
#include "coord/forwarding.h"
#include "coord/paths.h"
#include "tasks/protocol.h"

namespace drover::api::testing {

using namespace std::chrono_literals;
using tasks::State;
using tasks::TaskRef;

struct BatchEnv {
  virtual ~BatchEnv() = default;
  // A new connected session.
  virtual std::unique_ptr<coord::Coordination> connect() = 0;
};
struct BatchParam {
  std::string name;
  std::function<std::unique_ptr<BatchEnv>()> make;
};
inline std::string batchParamName(const ::testing::TestParamInfo<BatchParam>& info) {
  return info.param.name;
}

// Counts the calls the store makes, and can hold multis' answers (a request in flight) or run a
// hook before the next multi (to race it).
class Counting final : public coord::ForwardingCoordination {
 public:
  using ForwardingCoordination::ForwardingCoordination;
  std::atomic<int> reads{0}, multis{0};
  std::atomic<size_t> multi_bytes{0};
  std::vector<std::string> got;        // paths read by get(), in order (under mu_)
  std::function<void()> before_multi;  // runs once, before the next multi is sent

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

  coord::Future<coord::Node> get(const std::string& path, coord::Watcher w) override {
    ++reads;
    {
      std::lock_guard lock(mu_);
      got.push_back(path);
    }
    return inner_.get(path, std::move(w));
  }
  std::vector<std::string> gotSince(size_t from) {
    std::lock_guard lock(mu_);
    return {got.begin() + static_cast<std::ptrdiff_t>(std::min(from, got.size())), got.end()};
  }
  size_t gets() {
    std::lock_guard lock(mu_);
    return got.size();
  }
  coord::Future<std::optional<coord::Stat>> exists(const std::string& path,
                                                   coord::Watcher w) override {
    ++reads;
    return inner_.exists(path, std::move(w));
  }
  coord::Future<std::vector<std::string>> children(const std::string& path,
                                                   coord::Watcher w) override {
    ++reads;
    return inner_.children(path, std::move(w));
  }
  coord::Future<std::vector<coord::OpResult>> multi(std::vector<coord::Op> ops) override {
    std::function<void()> hook;
    {
      std::lock_guard lock(mu_);
      hook.swap(before_multi);
    }
    if (hook) hook();
    ++multis;
    for (const auto& op : ops) multi_bytes += coord::opBytes(op);
    auto r = inner_.multi(std::move(ops)).get();
    std::lock_guard lock(mu_);
    if (!held_) return coord::Future<std::vector<coord::OpResult>>::ready(std::move(r));
    coord::Promise<std::vector<coord::OpResult>> p;
    answers_.push_back([p, r] { p.set(r); });
    return p.future();
  }

 private:
  std::mutex mu_;
  bool held_ = false;
  std::vector<std::function<void()>> answers_;
};

class BatchStoreSuite : public ::testing::TestWithParam<BatchParam> {
 protected:
  void SetUp() override {
    env_ = GetParam().make();
    api_ = env_->connect();
    other_ = env_->connect();
    fault_ = std::make_unique<coord::FaultInjectingCoordination>(*api_);
    counting_ = std::make_unique<Counting>(*fault_);
    layout_ = tasks::Layout("/v2api-" + base::randomHex(6));
    for (const auto& d : layout_.directories()) ASSERT_TRUE(coord::ensurePath(*other_, d));
    options_.call_timeout = 5s;
    options_.settle_deadline = 5s;
    options_.counts_ttl = 0ms;
    store_ = std::make_unique<BatchStore>(*counting_, layout_, options_);
  }

  static tasks::TaskSpec spec(std::string id, std::string type = "noop") {
    tasks::TaskSpec s;
    s.id = std::move(id);
    s.type = std::move(type);
    return s;
  }

  std::vector<std::string> batchNames() {
    std::vector<std::string> out;
    auto buckets = other_->children(layout_.batches(), nullptr).get();
    if (!buckets) return out;
    for (const auto& b : *buckets) {
      auto names = other_->children(layout_.batchBucket(b), nullptr).get();
      if (names) out.insert(out.end(), names->begin(), names->end());
    }
    return out;
  }

  TaskRef refOf(const std::string& id) {
    auto ref = store_->reader().resolve(id);
    EXPECT_TRUE(ref && *ref) << id;
    return ref && *ref ? **ref : TaskRef{};
  }

  // The worker's record, listing what it runs (and its /assignments folder).
  void registerWorker(const std::string& worker, std::map<std::string, int64_t> running = {}) {
    tasks::WorkerInfo info;
    info.id = worker;
    info.running = std::move(running);
    const std::string data = tasks::toJson(info).dump();
    if (!other_->set(layout_.worker(worker), data, coord::kAnyVersion).get()) {
      ASSERT_TRUE(
          other_->create({layout_.worker(worker), data, coord::CreateMode::kPersistent, {}}).get());
    }
    ASSERT_TRUE(coord::ensurePath(*other_, layout_.assignmentsOf(worker)));
  }

  // The leader: moves waiting tasks of one batch into a new chunk on `worker`; the chunk's name.
  std::string assign(const std::vector<TaskRef>& refs, const std::string& worker) {
    const std::string& batch = refs.at(0).batch;
    auto node = other_->get(layout_.pending(batch), nullptr).get();
    EXPECT_TRUE(node);
    auto state = tasks::decodePending(node->data);
    auto rec_node = other_->get(layout_.batch(batch), nullptr).get();
    auto rec = tasks::decodeBatch(batch, rec_node->data);
    const std::string name = tasks::makeChunkName(0, ++chunks_);
    tasks::Chunk chunk;
    tasks::PendingState after = *state;
    for (const auto& ref : refs) {
      const tasks::Waiting* w = state->waitingAt(ref.index);
      EXPECT_TRUE(w);
      tasks::ChunkItem item{ref,      rec->tasks[ref.index].id, w->attempt, rec->submitted_at,
                            w->error, rec->tasks[ref.index]};
      if (item.id == tasks::generatedId(ref)) item.id.clear();
      chunk.items.push_back(item);
      after.hold(ref.index, tasks::Held{worker, name});
    }
    tasks::v2::Builder b(layout_);
    b.assign({tasks::v2::PendingWrite{batch, node->stat.version, after}}, worker, name, chunk,
             base::wallMillis());
    auto r = other_->multi(std::move(b).finish().ops).get();
    EXPECT_TRUE(r) << r.error().toString();
    return name;
  }

  // The leader's counts in /pending's data (WaitingPublisher), written as a leader would: fenced.
  void publishCount(tasks::WaitingCount count) {
    auto epoch = other_->set(layout_.epoch(), "leader", coord::kAnyVersion).get();
    if (!epoch) {
      ASSERT_TRUE(other_->create({layout_.epoch(), "", coord::CreateMode::kPersistent, {}}).get());
      epoch = other_->set(layout_.epoch(), "leader", coord::kAnyVersion).get();
    }
    auto b = tasks::v2::Builder::fenced(layout_, epoch->version);
    b.publishWaiting(count);
    ASSERT_TRUE(other_->multi(std::move(b).finish().ops).get());
  }

  // The worker: records `state` for `refs` of its chunk (the rest stays held).
  coord::Status commit(const std::string& worker, const std::string& chunk,
                       const std::vector<TaskRef>& refs, State state = State::kSucceeded) {
    auto node = other_->get(layout_.chunk(worker, chunk), nullptr).get();
    if (!node) return tl::unexpected(node.error());
    auto items = tasks::decodeChunk(node->data);
    std::map<std::string, tasks::ResultRecord> outcomes;
    for (const auto& ref : refs) {
      const tasks::ChunkItem* item = items->find(ref);
      EXPECT_TRUE(item);
      tasks::Outcome o;
      o.index = ref.index;
      o.id = item->id;
      o.state = state;
      o.attempt = item->attempt;
      o.worker = worker;
      o.started_at = base::wallMillis();
      o.finished_at = o.started_at;
      o.result = {{"ok", ref.index}};
      outcomes[ref.batch].outcomes.push_back(o);
    }
    tasks::v2::Builder b(layout_);
    b.commit({worker, chunk, node->stat.version, items->without(refs)}, outcomes, {}, {},
             base::wallMillis());
    auto r = other_->multi(std::move(b).finish().ops).get();
    if (!r) return tl::unexpected(r.error());
    return {};
  }

  // The REST API over store_ on a free loopback port, for the cases about request parsing and
  // status codes; stopped with the fixture.
  void startHttp() {
    HttpOptions ho;
    ho.port = 0;
    ho.threads = 2;
    http_ = std::make_unique<HttpServer>(*store_, nullptr, ho);
    auto port = http_->start();
    ASSERT_TRUE(port) << port.error();
    http_client_ = std::make_unique<httplib::Client>("127.0.0.1", *port);
  }
  // POSTs `body` (JSON) to `path`: the status and the parsed answer (0 and null: no answer).
  std::pair<int, tasks::Json> httpPost(const std::string& path, const std::string& body) {
    auto r = http_client_->Post(path, body, "application/json");
    EXPECT_TRUE(r) << path;
    return r ? std::make_pair(r->status, tasks::Json::parse(r->body, nullptr, false))
             : std::make_pair(0, tasks::Json());
  }

  std::unique_ptr<BatchEnv> env_;
  std::unique_ptr<coord::Coordination> api_, other_;
  std::unique_ptr<coord::FaultInjectingCoordination> fault_;
  std::unique_ptr<Counting> counting_;
  tasks::Layout layout_;
  StoreOptions options_;
  std::unique_ptr<BatchStore> store_;
  std::unique_ptr<HttpServer> http_;  // after store_: stopped before it goes
  std::unique_ptr<httplib::Client> http_client_;
  int64_t chunks_ = 0;
};

TEST_P(BatchStoreSuite, SubmitWithoutIdIsNamedAfterItsBatch) {
  auto r = store_->submit(spec(""));
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_TRUE(r->created);
  auto ref = tasks::parseGeneratedId(r->status.spec.id);
  ASSERT_TRUE(ref) << r->status.spec.id;
  EXPECT_EQ(ref->index, 0u);
  auto got = store_->get(r->status.spec.id);
  ASSERT_TRUE(got) << got.error().detail;
  EXPECT_EQ(got->state, State::kPending);
  EXPECT_EQ(got->spec.type, "noop");
  EXPECT_EQ(batchNames(), std::vector<std::string>{ref->batch});
  // No id entry for a generated id.
  auto ids =
      other_->children(layout_.idsBucketAt(tasks::Layout::bucketIndex(r->status.spec.id)), nullptr)
          .get();
  ASSERT_TRUE(ids);
  EXPECT_TRUE(ids->empty());
}

TEST_P(BatchStoreSuite, IdempotentSingleSubmit) {
  auto first = store_->submit(spec("job-1"));
  ASSERT_TRUE(first) << first.error().detail;
  EXPECT_TRUE(first->created);
  auto again = store_->submit(spec("job-1"));
  ASSERT_TRUE(again) << again.error().detail;
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->status.spec, spec("job-1"));
  auto other = store_->submit(spec("job-1", "echo"));
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().failure, Failure::kConflict);
  EXPECT_EQ(batchNames().size(), 1u);
}

TEST_P(BatchStoreSuite, IdempotentBatchSubmitIsAllOrNothing) {
  std::vector<tasks::TaskSpec> batch{spec("b1"), spec("b2"), spec("b3")};
  auto first = store_->submitBatch(batch);
  ASSERT_TRUE(first) << first.error().detail;
  EXPECT_TRUE(first->created);
  EXPECT_EQ(first->ids, (std::vector<std::string>{"b1", "b2", "b3"}));
  auto again = store_->submitBatch(batch);
  ASSERT_TRUE(again) << again.error().detail;
  EXPECT_FALSE(again->created);
  batch[1].type = "echo";
  auto differ = store_->submitBatch(batch);
  ASSERT_FALSE(differ);
  EXPECT_EQ(differ.error().failure, Failure::kConflict);
  EXPECT_NE(differ.error().detail.find("b2"), std::string::npos);
  // Partly new: nothing of it is written.
  auto partial = store_->submitBatch({spec("b1"), spec("new-1")});
  ASSERT_FALSE(partial);
  EXPECT_EQ(partial.error().failure, Failure::kConflict);
  EXPECT_EQ(store_->get("new-1").error().failure, Failure::kNotFound);
  EXPECT_EQ(batchNames().size(), 1u);
  // Mixed generated and client ids in one record.
  auto mixed = store_->submitBatch({spec(""), spec("m1"), spec("")});
  ASSERT_TRUE(mixed) << mixed.error().detail;
  EXPECT_EQ(mixed->ids[1], "m1");
  EXPECT_EQ(tasks::parseGeneratedId(mixed->ids[2])->index, 2u);
  EXPECT_EQ(store_->get("m1")->spec.id, "m1");
}

TEST_P(BatchStoreSuite, BadIdsAndBatchesNeverReachZooKeeper) {
  const int calls = counting_->reads + counting_->multis;
  for (const std::string& id : {std::string("0123456789abcdef.3"), std::string("a/b"),
                                std::string(".."), std::string(129, 'x')}) {
    auto r = store_->submit(spec(id));
    ASSERT_FALSE(r) << id;
    EXPECT_EQ(r.error().failure, Failure::kBadRequest) << id;
    EXPECT_EQ(store_->submitBatch({spec("fine"), spec(id)}).error().failure, Failure::kBadRequest);
  }
  EXPECT_EQ(store_->submitBatch({}).error().failure, Failure::kBadRequest);
  EXPECT_EQ(store_->submitBatch({spec("d"), spec("d")}).error().failure, Failure::kBadRequest);
  EXPECT_EQ(store_->get("a/b").error().failure, Failure::kBadRequest);
  EXPECT_EQ(store_->cancel("a/b").error().failure, Failure::kBadRequest);
  EXPECT_EQ(counting_->reads + counting_->multis, calls);
  EXPECT_TRUE(batchNames().empty());
}

TEST_P(BatchStoreSuite, TooLargeBatchIs413) {
  std::vector<tasks::TaskSpec> specs;
  for (int i = 0; i < 40; ++i) {
    auto s = spec("");
    s.payload = {{"blob", std::string(16 * 1024, 'x')}};
    specs.push_back(s);
  }
  auto r = store_->submitBatch(specs);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().failure, Failure::kTooLarge);
  EXPECT_NE(r.error().detail.find("split it"), std::string::npos);
  EXPECT_EQ(counting_->multis, 0);
}

TEST_P(BatchStoreSuite, ConcurrentSubmitsShareFewMultis) {
  options_.group_inflight = 1;
  BatchStore store(*counting_, layout_, options_);
  counting_->hold();
  constexpr int kN = 40;
  std::vector<std::future<StoreResult<SubmitResult>>> results;
  results.push_back(std::async(std::launch::async, [&] { return store.submit(spec("")); }));
  ASSERT_TRUE(base::eventually([&] { return counting_->multis == 1; }));
  for (int i = 1; i < kN; ++i) {
    results.push_back(std::async(std::launch::async, [&, i] {
      return store.submit(spec(i % 2 ? "g" + std::to_string(i) : ""));
    }));
  }
  ASSERT_TRUE(base::eventually([&] { return store.queuedSubmits() == kN - 1; }));
  counting_->release();
  std::set<std::string> ids;
  for (auto& f : results) {
    auto r = f.get();
    ASSERT_TRUE(r) << r.error().detail;
    EXPECT_TRUE(r->created);
    ids.insert(r->status.spec.id);
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kN));
  // The first submit's multi, then one for the 39 that queued behind it; a missing time
  // bucket costs each of the two one more.
  std::printf("%d concurrent single submits: %d multis\n", kN, counting_->multis.load());
  EXPECT_LE(counting_->multis, 4);
  EXPECT_EQ(batchNames().size(), 2u);
  for (const auto& id : ids) EXPECT_EQ(store.get(id)->state, State::kPending) << id;
}

TEST_P(BatchStoreSuite, TakenIdInAGroupIsResolvedAloneAndTheRestCommit) {
  ASSERT_TRUE(store_->submit(spec("taken")));
  options_.group_inflight = 1;
  BatchStore store(*counting_, layout_, options_);
  counting_->hold();
  const int m0 = counting_->multis;
  std::vector<std::future<StoreResult<SubmitResult>>> results;
  results.push_back(std::async(std::launch::async, [&] { return store.submit(spec("x0")); }));
  ASSERT_TRUE(base::eventually([&] { return counting_->multis == m0 + 1; }));
  results.push_back(std::async(std::launch::async, [&] { return store.submit(spec("x1")); }));
  results.push_back(std::async(std::launch::async, [&] { return store.submit(spec("taken")); }));
  results.push_back(
      std::async(std::launch::async, [&] { return store.submit(spec("taken", "echo")); }));
  ASSERT_TRUE(base::eventually([&] { return store.queuedSubmits() == 3; }));
  counting_->release();
  auto x0 = results[0].get(), x1 = results[1].get(), same = results[2].get(),
       other = results[3].get();
  ASSERT_TRUE(x0 && x1) << (x0 ? x1.error().detail : x0.error().detail);
  EXPECT_TRUE(x1->created);
  ASSERT_TRUE(same) << same.error().detail;
  EXPECT_FALSE(same->created);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().failure, Failure::kConflict);
  EXPECT_EQ(store.get("x1")->state, State::kPending);
}

TEST_P(BatchStoreSuite, CancelWaitingAndHeld) {
  auto sub = store_->submitBatch({spec("c0"), spec("c1"), spec("c2")});
  ASSERT_TRUE(sub);
  auto c0 = store_->cancel("c0");
  ASSERT_TRUE(c0) << c0.error().detail;
  EXPECT_FALSE(c0->already_finished);
  EXPECT_EQ(c0->status.state, State::kCancelled);
  EXPECT_EQ(store_->get("c0")->state, State::kCancelled);
  registerWorker("wk");
  const std::string chunk = assign({refOf("c1"), refOf("c2")}, "wk");
  auto c1 = store_->cancel("c1");
  ASSERT_TRUE(c1) << c1.error().detail;
  EXPECT_EQ(c1->status.state, State::kCancelled);
  EXPECT_EQ(c1->status.worker, "wk");
  // The chunk no longer holds it; its neighbour stays held.
  auto node = other_->get(layout_.chunk("wk", chunk), nullptr).get();
  ASSERT_TRUE(node);
  auto items = tasks::decodeChunk(node->data);
  ASSERT_EQ(items->items.size(), 1u);
  EXPECT_EQ(items->items[0].ref, refOf("c2"));
  EXPECT_EQ(store_->get("c2")->state, State::kAssigned);
  auto again = store_->cancel("c1");
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->already_finished);
  EXPECT_EQ(store_->cancel("nope").error().failure, Failure::kNotFound);
}

TEST_P(BatchStoreSuite, CancelRacingACommitLosesToIt) {
  ASSERT_TRUE(store_->submit(spec("race")));
  registerWorker("wk");
  const std::string chunk = assign({refOf("race")}, "wk");
  bool committed = false;
  counting_->before_multi = [&] {
    committed = static_cast<bool>(commit("wk", chunk, {refOf("race")}));
  };
  auto r = store_->cancel("race");
  ASSERT_TRUE(committed);
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_TRUE(r->already_finished);
  EXPECT_EQ(r->status.state, State::kSucceeded);
  EXPECT_EQ(store_->get("race")->state, State::kSucceeded);
}

TEST_P(BatchStoreSuite, AmbiguousSubmitNeverDuplicates) {
  // Warm up: the time bucket exists, so the lost multis below were applied.
  ASSERT_TRUE(store_->submit(spec("warm")));
  ASSERT_EQ(batchNames().size(), 1u);
  fault_->ambiguousNext(layout_.batches());
  auto r = store_->submit(spec("amb"));
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(fault_->injected(), 1);
  EXPECT_TRUE(r->created);
  EXPECT_EQ(batchNames().size(), 2u);
  fault_->ambiguousNext(layout_.batches());
  auto g = store_->submit(spec(""));
  ASSERT_TRUE(g) << g.error().detail;
  EXPECT_EQ(fault_->injected(), 2);
  EXPECT_EQ(batchNames().size(), 3u);
  fault_->ambiguousNext(layout_.batches());
  auto b = store_->submitBatch({spec(""), spec("amb2")});
  ASSERT_TRUE(b) << b.error().detail;
  EXPECT_EQ(fault_->injected(), 3);
  EXPECT_TRUE(b->created);
  EXPECT_EQ(batchNames().size(), 4u);
  EXPECT_EQ(store_->get("amb2")->state, State::kPending);
}

TEST_P(BatchStoreSuite, ThousandTaskBatchCost) {
  std::vector<tasks::TaskSpec> specs(1000, spec(""));
  const int multis = counting_->multis, reads = counting_->reads;
  const size_t bytes = counting_->multi_bytes;
  auto r = store_->submitBatch(specs);
  ASSERT_TRUE(r) << r.error().detail;
  // One multi; in a fresh tree the first fails NoNode on the time bucket (two creates, again).
  EXPECT_LE(counting_->multis - multis, 2);
  std::printf("1,000-task batch submit, fresh bucket: %d multis, %d reads, %.1f bytes/task\n",
              counting_->multis - multis, counting_->reads - reads,
              static_cast<double>(counting_->multi_bytes - bytes) / 1000);
  const int m1 = counting_->multis, r1 = counting_->reads;
  const size_t b1 = counting_->multi_bytes;
  auto again = store_->submitBatch(std::vector<tasks::TaskSpec>(1000, spec("")));
  ASSERT_TRUE(again);
  EXPECT_LE(counting_->multis - m1, 2);
  std::printf("1,000-task batch submit: %d multis, %d reads, %.1f bytes/task, %.4f requests/task\n",
              counting_->multis - m1, counting_->reads - r1,
              static_cast<double>(counting_->multi_bytes - b1) / 1000,
              static_cast<double>(counting_->multis - m1 + counting_->reads - r1) / 1000);
}

}  // namespace drover::api::testing

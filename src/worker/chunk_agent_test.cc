#include "worker/chunk_agent.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "base/eventually.h"
#include "base/executor.h"
#include "coord/fake/fake_coordination.h"
#include "coord/forwarding.h"
#include "coord/paths.h"
#include "tasks/protocol.h"
#include "tasks/records.h"

namespace drover::worker {
namespace {

using namespace std::chrono_literals;
using coord::Code;
using coord::OpKind;
using tasks::generatedId;
using tasks::State;

constexpr const char* kWorker = "w1";

// The worker's session, counting what the agent asks of it.
class Tap final : public coord::ForwardingCoordination {
 public:
  using ForwardingCoordination::ForwardingCoordination;
  coord::Future<std::vector<coord::OpResult>> multi(std::vector<coord::Op> ops) override {
    auto r = inner_.multi(std::move(ops)).get();  // the fake answers at once
    ++multis;
    if (!r) ++failed_multis;
    if (hold) {  // landed, but the reply waits for releaseHeld(): a commit in flight
      std::lock_guard lock(mu_);
      coord::Promise<std::vector<coord::OpResult>> p;
      held_.emplace_back(p, std::move(r));
      return p.future();
    }
    return coord::Future<std::vector<coord::OpResult>>::ready(std::move(r));
  }
  size_t held() {
    std::lock_guard lock(mu_);
    return held_.size();
  }
  void releaseHeld() {
    std::vector<Held> out;
    {
      std::lock_guard lock(mu_);
      out.swap(held_);
    }
    for (auto& [p, r] : out) p.set(std::move(r));
  }
  coord::Future<coord::Node> get(const std::string& path, coord::Watcher watcher) override {
    std::lock_guard lock(mu_);
    ++gets_[path];
    return inner_.get(path, std::move(watcher));
  }
  coord::Future<coord::Stat> set(const std::string& path, std::string data,
                                 int32_t version) override {
    std::lock_guard lock(mu_);
    ++sets_[path];
    return inner_.set(path, std::move(data), version);
  }
  int gets(const std::string& path) {
    std::lock_guard lock(mu_);
    return gets_[path];
  }
  int sets(const std::string& path) {
    std::lock_guard lock(mu_);
    return sets_[path];
  }
  std::atomic<int> multis{0};
  std::atomic<int> failed_multis{0};
  std::atomic<bool> hold{false};

 private:
  using Held = std::pair<coord::Promise<std::vector<coord::OpResult>>,
                         coord::Result<std::vector<coord::OpResult>>>;
  std::mutex mu_;
  std::vector<Held> held_;
  std::map<std::string, int> gets_;
  std::map<std::string, int> sets_;
};

class ChunkAgentTest : public ::testing::Test {
 protected:
  ChunkAgentTest() {
    for (const auto& dir : layout_.directoriesV2()) {
      EXPECT_TRUE(coord::ensurePath(admin_, dir).has_value()) << dir;
    }
    EXPECT_TRUE(coord::ensurePath(admin_, layout_.epoch()).has_value());
    EXPECT_TRUE(coord::ensurePath(admin_, layout_.workers()).has_value());
    EXPECT_TRUE(coord::ensurePath(admin_, layout_.assignmentsOf(kWorker)).has_value());
    tasks::WorkerInfo info;
    info.id = kWorker;
    info.slots = 4;
    EXPECT_TRUE(worker_coord_
                    .create({layout_.worker(kWorker),
                             tasks::toJson(info).dump(),
                             coord::CreateMode::kEphemeral,
                             {}})
                    .get());
    registerBuiltins(registry_);
    registry_.add("block", [this](TaskContext& ctx) {
      ++block_runs_;
      ctx.cancel.waitFor(60s);
      std::lock_guard lock(mu_);
      reasons_[ctx.id] = ctx.cancel.reason();
      return HandlerResult::failure(std::string(cancelReasonName(ctx.cancel.reason())));
    });
    // Ignores cancellation: returns once the test releases it.
    registry_.add("gate", [this](TaskContext& ctx) {
      ++gate_runs_;
      base::eventually([&] { return release_.load(); }, 30s, 1ms);
      return HandlerResult::success(ctx.id);
    });
    registry_.add("record", [this](TaskContext& ctx) {
      std::lock_guard lock(mu_);
      order_.push_back(ctx.id);
      return HandlerResult::success();
    });
    options_.retry_backoff = base::Backoff{10s, 60s, 2.0, 0.0};
    options_.zk_backoff = base::Backoff{5ms, 50ms, 2.0, 0.0};
  }
  ~ChunkAgentTest() override {
    release_ = true;
    if (agent_) agent_->stop();
  }

  void startAgent(int slots = 4) {
    runner_ = std::make_unique<Runner>(slots);
    agent_ =
        std::make_unique<ChunkAgent>(tap_, layout_, kWorker, *runner_, registry_, options_, &exec_);
    agent_->start();
    exec_.runReady();
  }

  // Runs the agent's executor until `pred` holds (or 5 s pass).
  template <class Pred>
  bool until(Pred&& pred) {
    return base::eventually(
        [&] {
          exec_.runReady();
          return pred();
        },
        5s, 1ms);
  }
  // Waits until the Runner has nothing running, then lets the agent handle all completions in
  // one turn: outcomes that are ready together.
  void settle() {
    ASSERT_TRUE(base::eventually([&] { return runner_->runningCount() == 0; }));
    exec_.runReady();
  }

  static tasks::TaskSpec spec(std::string type, int max_attempts = 3, int priority = 5) {
    tasks::TaskSpec s;
    s.type = std::move(type);
    s.max_attempts = max_attempts;
    s.priority = priority;
    return s;
  }

  // Plays the API: submits a batch.
  std::string submit(std::vector<tasks::TaskSpec> specs) {
    tasks::BatchRecord batch;
    batch.submitted_at = base::wallMillis();
    batch.name = tasks::makeBatchName(batch.submitted_at, next_batch_++);
    for (uint32_t i = 0; i < specs.size(); ++i) {
      if (specs[i].id.empty()) specs[i].id = tasks::generatedId({batch.name, i});
    }
    batch.tasks = std::move(specs);
    std::string bucket = batch.name.substr(0, tasks::Layout::kBatchBucketDigits);
    EXPECT_TRUE(coord::ensurePath(admin_, layout_.batchBucket(bucket)).has_value());
    EXPECT_TRUE(coord::ensurePath(admin_, layout_.pendingBucket(bucket)).has_value());
    tasks::v2::Builder b(layout_);
    b.submit(batch);
    auto r = admin_.multi(std::move(b).finish().ops).get();
    EXPECT_TRUE(r) << r.error().toString();
    records_[batch.name] = batch;
    return batch.name;
  }

  std::pair<int32_t, tasks::PendingState> pending(const std::string& batch) {
    auto node = admin_.get(layout_.pending(batch), nullptr).get();
    EXPECT_TRUE(node);
    return {node->stat.version, *tasks::decodePending(node->data)};
  }

  // Plays the leader: moves `indices` of `batch` into a new chunk of this worker.
  std::string assign(const std::string& batch, const std::vector<uint32_t>& indices,
                     bool inline_specs = true) {
    std::string name = tasks::makeChunkName(0, next_chunk_++);
    auto [version, state] = pending(batch);
    tasks::Chunk chunk;
    for (uint32_t i : indices) {
      const tasks::Waiting* w = state.waitingAt(i);
      EXPECT_NE(w, nullptr) << i;
      tasks::ChunkItem item;
      item.ref = {batch, i};
      item.id = records_[batch].tasks[i].id;
      item.attempt = w ? w->attempt : 1;
      item.error = w ? w->error : "";
      if (inline_specs) item.spec = records_[batch].tasks[i];
      chunk.items.push_back(std::move(item));
      state.hold(i, tasks::Held{kWorker, name});
    }
    auto b = tasks::v2::Builder::fenced(layout_, 0);
    b.assign({tasks::v2::PendingWrite{batch, version, state}}, kWorker, name, chunk,
             base::wallMillis());
    auto r = admin_.multi(std::move(b).finish().ops).get();
    EXPECT_TRUE(r) << r.error().toString();
    return name;
  }

  std::optional<std::pair<int32_t, tasks::Chunk>> chunk(const std::string& name) {
    auto node = server_->peek(layout_.chunk(kWorker, name));
    if (!node) return std::nullopt;
    return std::pair{node->stat.version, *tasks::decodeChunk(node->data)};
  }

  // Every outcome recorded for `batch`, by index, and how many times each was recorded.
  std::map<uint32_t, tasks::Outcome> outcomes(const std::string& batch,
                                              std::map<uint32_t, int>* times = nullptr) {
    std::map<uint32_t, tasks::Outcome> out;
    auto kids = admin_.children(layout_.batch(batch), nullptr).get();
    if (!kids) return out;
    for (const auto& k : *kids) {
      auto node = admin_.get(layout_.batch(batch) + "/" + k, nullptr).get();
      auto rec = tasks::decodeResults(node->data);
      for (const auto& o : rec->outcomes) {
        if (o.state == tasks::State::kPending) continue;  // an attempt's end before a retry
        out[o.index] = o;
        if (times) ++(*times)[o.index];
      }
    }
    return out;
  }

  std::optional<tasks::WorkerInfo> workerInfo() {
    auto node = server_->peek(layout_.worker(kWorker));
    if (!node) return std::nullopt;
    return tasks::workerFromJson(*tasks::parseJson(node->data));
  }

  std::shared_ptr<coord::FakeServer> server_ = std::make_shared<coord::FakeServer>();
  coord::FakeCoordination admin_{server_};         // the test: API and leader
  coord::FakeCoordination worker_coord_{server_};  // the worker's session
  Tap tap_{worker_coord_};
  tasks::Layout layout_{"/drover"};
  HandlerRegistry registry_;
  std::atomic<int> gate_runs_{0};
  std::atomic<int> block_runs_{0};  // "block" handlers entered (not just handed to the Runner)
  std::atomic<bool> release_{false};
  std::mutex mu_;
  std::vector<std::string> order_;
  std::map<std::string, CancelReason> reasons_;
  AgentOptions options_;
  std::map<std::string, tasks::BatchRecord> records_;
  uint32_t next_batch_ = 1;
  int64_t next_chunk_ = 1;
  base::ManualExecutor exec_;
  std::unique_ptr<Runner> runner_;
  std::unique_ptr<ChunkAgent> agent_;
};

TEST_F(ChunkAgentTest, RunsAChunkAndCommitsWhatIsReadyTogetherInOneMulti) {
  startAgent();
  std::string batch = submit({spec("gate"), spec("gate"), spec("gate"), spec("gate")});
  std::string c1 = assign(batch, {0, 1});
  std::string c2 = assign(batch, {2, 3});
  ASSERT_TRUE(until([&] { return gate_runs_ == 4; }));
  int before = tap_.multis;
  release_ = true;
  settle();
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 4; }));
  // Both chunks' commits in one multi; both chunks deleted (nothing left in them).
  EXPECT_EQ(tap_.multis - before, 1);
  EXPECT_EQ(tap_.failed_multis, 0);
  EXPECT_FALSE(chunk(c1));
  EXPECT_FALSE(chunk(c2));
  std::map<uint32_t, int> times;
  auto out = outcomes(batch, &times);
  ASSERT_EQ(out.size(), 4u);
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(out[i].state, State::kSucceeded) << i;
    EXPECT_EQ(out[i].worker, kWorker);
    EXPECT_EQ(out[i].attempt, 1);
    EXPECT_GT(out[i].finished_at, 0);
    EXPECT_EQ(times[i], 1);
  }
  // One result record per chunk commit and batch.
  EXPECT_EQ(admin_.children(layout_.batch(batch), nullptr).get()->size(), 2u);
}

// A commit names its event record for the webhook dispatcher: "n-" when no task it ends has a
// callback_url (the dispatcher skips it unread), "e-" when one has.
TEST_F(ChunkAgentTest, ACommitSaysWhetherATaskItEndsHasACallback) {
  startAgent();
  auto newest = [&] {
    auto kids = admin_.children(layout_.events(), nullptr).get();
    auto last = std::max_element(kids->begin(), kids->end(), coord::bySequence);
    return last == kids->end() ? std::string() : *last;
  };
  tasks::TaskSpec hooked = spec("record");
  hooked.callback_url = "http://127.0.0.1:9/hook";
  std::string batch = submit({spec("record"), hooked});
  assign(batch, {0});
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 1; }));
  ASSERT_TRUE(until([&] { return newest().rfind("n-", 0) == 0 && outcomes(batch).size() == 1; }));
  assign(batch, {1});
  ASSERT_TRUE(until([&] { return outcomes(batch).size() == 2; }));
  EXPECT_EQ(newest().substr(0, 2), "e-");
}

// One commit multi in flight per worker: outcomes that finish while it is out wait for its reply
// and then share one multi, whatever chunk they come from (docs/ZNODES.md, the worker's side).
TEST_F(ChunkAgentTest, OutcomesReadyWhileACommitIsInFlightGoOutTogetherAfterIt) {
  startAgent();
  std::string batch = submit({spec("record"), spec("gate"), spec("gate")});
  tap_.hold = true;
  assign(batch, {0});
  ASSERT_TRUE(until([&] { return tap_.held() == 1; }));  // its commit is out, reply held
  int sent = tap_.multis;
  std::string c2 = assign(batch, {1});
  std::string c3 = assign(batch, {2});
  ASSERT_TRUE(until([&] { return gate_runs_ == 2; }));
  release_ = true;
  settle();
  ASSERT_TRUE(until([&] { return agent_->stats().running == 0; }));
  EXPECT_EQ(tap_.multis, sent);  // both wait: nothing sent while a commit is in flight
  tap_.hold = false;
  tap_.releaseHeld();
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 3; }));
  EXPECT_EQ(tap_.multis, sent + 1);  // then one multi for both chunks
  EXPECT_EQ(tap_.failed_multis, 0);
  EXPECT_FALSE(chunk(c2));
  EXPECT_FALSE(chunk(c3));
  std::map<uint32_t, int> times;
  auto out = outcomes(batch, &times);
  ASSERT_EQ(out.size(), 3u);
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(out[i].state, State::kSucceeded) << i;
    EXPECT_EQ(times[i], 1) << i;
  }
}

// A chunk's name is never used again, so once it is deleted no watch may stay on its path: the
// worker once re-armed an exists watch on every deleted chunk, and tens of thousands of them
// stalled the ZooKeeper client's I/O thread after a reconnect.
TEST_F(ChunkAgentTest, NoWatchOutlivesAFinishedChunk) {
  startAgent();
  settle();
  const size_t idle = server_->watchCount();
  std::vector<std::string> names;
  for (int round = 0; round < 20; ++round) {
    std::string batch = submit({spec("noop"), spec("noop"), spec("noop")});
    names.push_back(assign(batch, {0}));
    names.push_back(assign(batch, {1, 2}));
  }
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 60; }));
  settle();
  for (const auto& name : names) EXPECT_FALSE(chunk(name)) << name;
  // The assignment folder's child watch (and the test's own) is all that is left.
  EXPECT_LE(server_->watchCount(), idle + 1);
}

TEST_F(ChunkAgentTest, AFailureWithAttemptsLeftGoesBackToPendingWithNotBefore) {
  startAgent();
  std::string batch = submit({spec("fail", 3), spec("noop")});
  // The leader changes the pending state between the worker's read and its commit: the commit
  // fails on that version, and the worker reads it again and retries.
  std::atomic<bool> raced{false};
  worker_coord_.beforeNextOn(OpKind::kMulti, layout_.pending(batch), [&] {
    auto [v, state] = pending(batch);
    ASSERT_TRUE(admin_.set(layout_.pending(batch), tasks::encode(state), v).get());
    raced = true;
  });
  int64_t before = base::wallMillis();
  std::string c = assign(batch, {0, 1});
  ASSERT_TRUE(
      until([&] { return agent_->stats().retried == 1 && agent_->stats().succeeded == 1; }));
  EXPECT_TRUE(raced);
  EXPECT_EQ(worker_coord_.pendingFaults(), 0u);
  EXPECT_GE(tap_.failed_multis, 1);
  auto [v, state] = pending(batch);
  const tasks::Waiting* w = state.waitingAt(0);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->attempt, 2);
  EXPECT_GE(w->not_before, before + 10'000);
  EXPECT_LE(w->not_before, base::wallMillis() + 10'000);
  EXPECT_NE(w->error.find("fail"), std::string::npos) << w->error;
  EXPECT_EQ(state.heldAt(0), nullptr);
  auto out = outcomes(batch);
  EXPECT_EQ(out.count(0), 0u);  // not terminal: no outcome, only its attempt's end (history)
  size_t history = 0;
  auto kids = admin_.children(layout_.batch(batch), nullptr).get();
  ASSERT_TRUE(kids);
  for (const auto& k : *kids) {
    auto node = admin_.get(layout_.batch(batch) + "/" + k, nullptr).get();
    ASSERT_TRUE(node);
    auto rec = tasks::decodeResults(node->data);
    ASSERT_TRUE(rec);
    for (const auto& o : rec->outcomes) {
      if (o.index == 0 && o.state == State::kPending && o.attempt == 1) ++history;
    }
  }
  EXPECT_EQ(history, 1u);
  EXPECT_EQ(out[1].state, State::kSucceeded);
  EXPECT_FALSE(chunk(c));
}

TEST_F(ChunkAgentTest, OutOfAttemptsTheFailureIsItsOutcome) {
  startAgent();
  std::string batch = submit({spec("fail", 1)});
  assign(batch, {0});
  ASSERT_TRUE(until([&] { return agent_->stats().failed == 1; }));
  auto out = outcomes(batch);
  ASSERT_EQ(out.count(0), 1u);
  EXPECT_EQ(out[0].state, State::kFailed);
  EXPECT_FALSE(out[0].error.empty());
  EXPECT_TRUE(pending(batch).second.waiting().empty());
  EXPECT_EQ(agent_->stats().retried, 0u);
}

TEST_F(ChunkAgentTest, SpecsNotInlineAreReadFromTheBatchRecordOnce) {
  startAgent();
  tasks::TaskSpec echo = spec("echo");
  echo.payload = Json{{"x", 7}};
  std::string batch = submit({echo, echo, spec("nosuchtype")});
  assign(batch, {0, 1, 2}, /*inline_specs=*/false);
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 2 && agent_->stats().failed == 1; }));
  EXPECT_EQ(tap_.gets(layout_.batch(batch)), 1);
  auto out = outcomes(batch);
  EXPECT_EQ(out[0].result, (Json{{"x", 7}}));
  EXPECT_EQ(out[2].state, State::kFailed);  // rejected: the spec's type is unknown here
  EXPECT_NE(out[2].error.find("nosuchtype"), std::string::npos);
  EXPECT_EQ(agent_->stats().rejected, 1u);
}

TEST_F(ChunkAgentTest, AReclaimedTasksOutcomeIsFencedAndTheRestCommitted) {
  startAgent();
  std::string batch = submit({spec("gate"), spec("gate")});
  std::string c = assign(batch, {0, 1});
  ASSERT_TRUE(until([&] { return gate_runs_ == 2; }));
  // The leader reclaims task 0 just before the worker's commit of both: the commit fails on the
  // chunk's version, the worker reads the chunk again and commits only task 1.
  std::atomic<bool> reclaimed{false};
  worker_coord_.beforeNextOn(OpKind::kMulti, layout_.chunk(kWorker, c), [&] {
    auto now = chunk(c);
    auto [v, state] = pending(batch);
    state.wait(0, tasks::Waiting{});
    const tasks::ChunkItem item = now->second.items[0];
    auto b = tasks::v2::Builder::fenced(layout_, 0);
    b.reclaim(tasks::v2::ChunkWrite{kWorker, c, now->first, now->second.without({item.ref})},
              {item}, {tasks::v2::PendingWrite{batch, v, state}}, base::wallMillis());
    ASSERT_TRUE(admin_.multi(std::move(b).finish().ops).get());
    reclaimed = true;
  });
  release_ = true;
  settle();
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 1; }));
  EXPECT_TRUE(reclaimed);
  EXPECT_GE(tap_.failed_multis, 1);
  EXPECT_EQ(agent_->stats().fenced_commits, 1u);
  auto out = outcomes(batch);
  EXPECT_EQ(out.count(0), 0u);
  EXPECT_EQ(out[1].state, State::kSucceeded);
  EXPECT_NE(pending(batch).second.waitingAt(0), nullptr);
  EXPECT_FALSE(chunk(c));
}

TEST_F(ChunkAgentTest, ACancelThatRewritesTheChunkStopsTheRun) {
  startAgent();
  std::string batch = submit({spec("block"), spec("gate")});
  std::string c = assign(batch, {0, 1});
  ASSERT_TRUE(until([&] { return block_runs_ == 1 && gate_runs_ == 1; }));  // both entered
  EXPECT_EQ(agent_->stats().running, 2);
  // The API cancels task 0: the chunk without it, the pending state without it, its outcome.
  auto now = chunk(c);
  auto [v, state] = pending(batch);
  state.erase(0);
  tasks::Outcome cancelled;
  cancelled.index = 0;
  cancelled.state = State::kCancelled;
  cancelled.finished_at = base::wallMillis();
  tasks::v2::Builder b(layout_);
  b.cancel(now->second.items[0], tasks::v2::PendingWrite{batch, v, state},
           tasks::v2::ChunkWrite{kWorker, c, now->first, now->second.without({{batch, 0}})},
           cancelled);
  ASSERT_TRUE(admin_.multi(std::move(b).finish().ops).get());
  ASSERT_TRUE(until([&] {
    std::lock_guard lock(mu_);
    return reasons_.count(generatedId({batch, 0})) != 0;
  }));
  {
    std::lock_guard lock(mu_);
    EXPECT_EQ(reasons_[generatedId({batch, 0})], CancelReason::kCancelled);
  }
  ASSERT_TRUE(until([&] { return agent_->stats().fenced_commits == 1; }));
  release_ = true;
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 1; }));
  std::map<uint32_t, int> times;
  auto out = outcomes(batch, &times);
  EXPECT_EQ(out[0].state, State::kCancelled);  // the API's outcome, and only it
  EXPECT_EQ(times[0], 1);
  EXPECT_EQ(out[1].state, State::kSucceeded);
}

TEST_F(ChunkAgentTest, TheRunningReportIsWrittenAndCoalesced) {
  startAgent();
  std::string path = layout_.worker(kWorker);
  // A task that ends within mark_running_after never appears.
  std::string quick = submit({spec("noop")});
  assign(quick, {0});
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 1; }));
  exec_.advance(300ms);
  EXPECT_EQ(tap_.sets(path), 0);

  std::string batch = submit({spec("gate"), spec("gate")});
  assign(batch, {0});
  ASSERT_TRUE(until([&] { return gate_runs_ == 1; }));
  exec_.advance(20ms);
  ASSERT_TRUE(until([&] { return tap_.sets(path) == 1; }));
  auto info = workerInfo();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->running.size(), 1u);
  EXPECT_EQ(info->running.count(generatedId({batch, 0})), 1u);
  EXPECT_EQ(info->slots, 4);  // the rest of the record is kept

  assign(batch, {1});
  ASSERT_TRUE(until([&] { return gate_runs_ == 2; }));
  exec_.advance(100ms);
  exec_.runReady();
  EXPECT_EQ(tap_.sets(path), 1);  // coalesced: not before 250 ms since the last write
  exec_.advance(150ms);
  ASSERT_TRUE(until([&] { return tap_.sets(path) == 2; }));
  EXPECT_EQ(workerInfo()->running.size(), 2u);

  release_ = true;
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 3; }));
  exec_.advance(250ms);
  ASSERT_TRUE(until([&] { return tap_.sets(path) == 3; }));
  EXPECT_TRUE(workerInfo()->running.empty());
}

TEST_F(ChunkAgentTest, PrefetchedSurplusStartsAsSlotsFreeInPriorityOrder) {
  startAgent(/*slots=*/1);
  std::string batch =
      submit({spec("gate"), spec("record", 3, 1), spec("record", 3, 9), spec("record", 3, 5)});
  assign(batch, {0});
  ASSERT_TRUE(until([&] { return gate_runs_ == 1; }));
  assign(batch, {1, 2, 3});
  ASSERT_TRUE(until([&] { return chunk(tasks::makeChunkName(0, 2)).has_value(); }));
  for (int i = 0; i < 20; ++i) exec_.runReady();
  {
    std::lock_guard lock(mu_);
    EXPECT_TRUE(order_.empty());  // read, but waiting: the one slot is taken
  }
  EXPECT_EQ(agent_->stats().running, 1);
  release_ = true;  // the slot frees; the Runner's notification starts the next, no timer
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 4; }));
  std::lock_guard lock(mu_);
  EXPECT_EQ(order_, (std::vector<std::string>{generatedId({batch, 2}), generatedId({batch, 3}),
                                              generatedId({batch, 1})}));
}

TEST_F(ChunkAgentTest, SessionExpiryMakesItDeadAndCancelsItsRuns) {
  startAgent();
  std::string batch = submit({spec("block")});
  assign(batch, {0});
  // The handler itself must be running: a task cancelled while still queued in the Runner ends
  // without entering its handler, and the test would see no reason recorded.
  ASSERT_TRUE(until([&] { return block_runs_ == 1; }));
  EXPECT_EQ(agent_->stats().running, 1);
  EXPECT_FALSE(agent_->dead());
  worker_coord_.expireSession(/*rebuild=*/true);
  ASSERT_TRUE(until([&] { return agent_->dead(); }));
  ASSERT_TRUE(until([&] {
    std::lock_guard lock(mu_);
    return reasons_.count(generatedId({batch, 0})) != 0;
  }));
  std::lock_guard lock(mu_);
  EXPECT_EQ(reasons_[generatedId({batch, 0})], CancelReason::kShutdown);
  EXPECT_TRUE(outcomes(batch).empty());  // nothing committed: the leader requeues
}

TEST_F(ChunkAgentTest, ItsAssignmentFolderGoneMakesItDead) {
  startAgent();
  ASSERT_TRUE(admin_.remove(layout_.assignmentsOf(kWorker), coord::kAnyVersion).get());
  ASSERT_TRUE(until([&] { return agent_->dead(); }));
}

TEST_F(ChunkAgentTest, AnAmbiguousCommitIsSettledByReadingTheChunk) {
  startAgent();
  std::string batch = submit({spec("noop"), spec("gate")});
  // The commit of task 0 lands but its reply is lost: the chunk (without task 0) tells.
  worker_coord_.failNext(OpKind::kMulti, Code::kConnectionLoss, coord::FaultMode::kAfterApply);
  std::string c = assign(batch, {0, 1});
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 1; }));
  EXPECT_EQ(worker_coord_.pendingFaults(), 0u);
  release_ = true;
  ASSERT_TRUE(until([&] { return agent_->stats().succeeded == 2; }));
  std::map<uint32_t, int> times;
  outcomes(batch, &times);
  EXPECT_EQ(times[0], 1);  // never recorded twice
  EXPECT_EQ(times[1], 1);
  EXPECT_FALSE(chunk(c));
}

}  // namespace
}  // namespace drover::worker

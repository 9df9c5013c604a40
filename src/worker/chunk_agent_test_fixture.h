#pragma once

// The fixture of ChunkAgent's tests (chunk_agent_test.cc, chunk_agent_fence_test.cc): the agent
// on the fake tree, its session tapped to count what it asks, time driven by a manual executor.

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
#include "worker/chunk_agent.h"

namespace drover::worker::agent_test {

using namespace std::chrono_literals;
using coord::Code;
using coord::OpKind;
using tasks::generatedId;
using tasks::State;

inline constexpr const char* kWorker = "w1";

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
    for (const auto& dir : layout_.directories()) {
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

}  // namespace drover::worker::agent_test

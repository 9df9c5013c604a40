#pragma once

// The BatchScheduler tests' fixture: a leader on the fake coordination tree, with workers and
// submits written the way the API and the worker write them (batch_test_actors.h).

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
#include "scheduler/batch_scheduler.h"
#include "scheduler/batch_test_actors.h"

namespace drover::scheduler {

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
    for (const auto& dir : layout_.directories()) ASSERT_TRUE(coord::ensurePath(admin_, dir));
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
  std::unique_ptr<coord::ForwardingCoordination> via_;  // outlives the scheduler
  std::unique_ptr<BatchScheduler> scheduler_;
  std::mutex mu_;
  std::vector<std::string> fenced_;
};

}  // namespace drover::scheduler

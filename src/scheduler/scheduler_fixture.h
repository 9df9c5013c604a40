#pragma once

// The scheduler's test fixture: a fake tree, an admin session that plays the API and the
// workers, and the scheduler under test on its own session.

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "base/eventually.h"
#include "coord/fake/fake_coordination.h"
#include "coord/forwarding.h"
#include "coord/paths.h"
#include "scheduler/scheduler.h"
#include "tasks/transitions.h"

namespace drover::scheduler {

using coord::CreateMode;
using coord::CreateOp;
using coord::FakeCoordination;
using coord::FakeServer;
using tasks::State;
using namespace std::chrono_literals;

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const auto& dir : layout_.directories()) ASSERT_TRUE(coord::ensurePath(admin_, dir));
    ASSERT_TRUE(admin_.create(CreateOp{layout_.epoch(), "", CreateMode::kPersistent, {}}).get());
    // The election recipe's bump: E is the version it set.
    auto stat = admin_.set(layout_.epoch(), "leader-1", coord::kAnyVersion).get();
    ASSERT_TRUE(stat);
    epoch_ = stat->version;
    options_.sweep_interval = std::chrono::hours(1);  // watches must do the work
    options_.retry_backoff = base::Backoff{10ms, 100ms, 2.0, 0.0};
    options_.orphan_dir_grace = 0ms;
    // The first scan of a fake tree takes milliseconds, but a loaded machine could stretch it
    // past the default deadline and turn priority-order tests into early assignment.
    options_.first_assign_after = std::chrono::hours(1);
  }

  void TearDown() override {
    if (scheduler_) scheduler_->stop();
  }

  // Seeds a task the way the API submits it: status (pending) + job + event in one multi.
  void submit(const std::string& id, int priority = 5, int max_attempts = 3,
              int64_t not_before = 0) {
    tasks::TaskSpec spec{
        .id = id, .type = "noop", .priority = priority, .max_attempts = max_attempts};
    tasks::TaskStatus status;
    status.spec = spec;
    status.submitted_at = base::wallMillis();
    apply(tasks::submit(layout_, status, not_before));
  }

  // A task with routing fields (docs/ROUTING.md).
  void submitRouted(const std::string& id, const std::string& queue,
                    std::vector<std::string> labels = {}, const std::string& type = "noop") {
    tasks::TaskStatus status;
    status.spec.id = id;
    status.spec.type = type;
    status.spec.queue = queue;
    status.spec.labels = std::move(labels);
    status.submitted_at = base::wallMillis();
    apply(tasks::submit(layout_, status, 0));
  }

  // A worker that serves `queues`, has `labels` and runs `types`.
  void addRoutedWorker(const std::string& id, int slots, std::vector<std::string> queues,
                       std::vector<std::string> labels, std::vector<std::string> types) {
    tasks::WorkerInfo info{id, "host", 1, slots, std::move(labels), "", 0, 0, {}, {}};
    info.queues = std::move(queues);
    info.types = std::move(types);
    registerWorker(info);
  }

  // Another actor's transition (the API's submit, a worker's commit), from admin_'s session.
  void apply(tasks::TaskOps part) {
    tasks::Txn txn(layout_);
    txn.add(std::move(part));
    auto r = admin_.multi(std::move(txn).finish().ops).get();
    ASSERT_TRUE(r) << r.error().toString();
  }

  // A worker of the default queue that runs any type.
  void addWorker(const std::string& id, int slots, int prefetch = 0) {
    registerWorker(tasks::WorkerInfo{id, "host", 1, slots, {}, "", 0, prefetch, {"default"}, {}});
  }

  // Registers a worker the way a worker does: its assignments folder, then its ephemeral node.
  void registerWorker(const tasks::WorkerInfo& info) {
    ASSERT_TRUE(
        admin_.create(CreateOp{layout_.assignmentsOf(info.id), "", CreateMode::kPersistent, {}})
            .get());
    ASSERT_TRUE(
        admin_
            .create(CreateOp{
                layout_.worker(info.id), tasks::toJson(info).dump(), CreateMode::kEphemeral, {}})
            .get());
  }

  void removeWorker(const std::string& id) {
    ASSERT_TRUE(admin_.remove(layout_.worker(id), coord::kAnyVersion).get());
  }

  // The worker's commit: delete the assignment and record success, in one multi.
  void complete(const std::string& worker, const std::string& id) {
    auto status = statusOf(id);
    ASSERT_TRUE(status);
    status->state = State::kSucceeded;
    status->finished_at = base::wallMillis();
    apply(tasks::commit(layout_, worker, coord::kAnyVersion, *status, std::nullopt, true,
                        status->finished_at));
  }

  // Makes the scheduler talk through a wrapper of leader_ (see via_); returns the wrapper.
  template <class Wrapper, class... Args>
  Wrapper& talkVia(Args&&... args) {
    auto wrapper = std::make_unique<Wrapper>(leader_, std::forward<Args>(args)...);
    Wrapper& ref = *wrapper;
    via_ = std::move(wrapper);
    return ref;
  }

  void start() {
    coord::Coordination& session = via_ ? *via_ : leader_;
    scheduler_ =
        std::make_unique<Scheduler>(session, layout_, options_, epoch_, [this](std::string reason) {
          std::lock_guard lock(mu_);
          fenced_.push_back(reason);
        });
    scheduler_->start();
  }

  std::vector<std::string> fenced() {
    std::lock_guard lock(mu_);
    return fenced_;
  }

  std::optional<tasks::TaskStatus> statusOf(const std::string& id) {
    auto node = server_->peek(layout_.status(id));
    if (!node) return std::nullopt;
    auto j = tasks::parseJson(node->data);
    return j ? tasks::statusFromJson(*j) : std::nullopt;
  }

  std::optional<tasks::Job> jobOf(const std::string& id) {
    auto node = server_->peek(layout_.job(id));
    if (!node) return std::nullopt;
    auto j = tasks::parseJson(node->data);
    return j ? tasks::jobFromJson(*j) : std::nullopt;
  }

  std::vector<std::string> children(const std::string& path) {
    auto r = admin_.children(path, nullptr).get();
    if (!r) return {};
    auto names = *r;
    std::sort(names.begin(), names.end());
    return names;
  }

  // Every status id, over the 256 status buckets, sorted.
  std::vector<std::string> statusIds() {
    std::vector<std::string> ids;
    for (int b = 0; b < tasks::Layout::kJobBuckets; ++b) {
      for (auto& id : children(layout_.statusBucketAt(b))) ids.push_back(std::move(id));
    }
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  // Task id -> worker, over every assignment in the tree.
  std::map<std::string, std::string> assignments() {
    std::map<std::string, std::string> out;
    for (const auto& w : children(layout_.assignments())) {
      for (const auto& id : children(layout_.assignmentsOf(w))) out[id] = w;
    }
    return out;
  }

  // How many token nodes (job or assignment) exist for a task.
  int tokens(const std::string& id) {
    int n = server_->peek(layout_.job(id)) ? 1 : 0;
    for (const auto& w : children(layout_.assignments())) {
      if (server_->peek(layout_.assignment(w, id))) ++n;
    }
    return n;
  }

  bool isAssigned(const std::string& id) {
    auto s = statusOf(id);
    return s && s->state == State::kAssigned && tokens(id) == 1 && !jobOf(id);
  }

  tasks::Layout layout_{"/drover"};
  std::shared_ptr<FakeServer> server_ = std::make_shared<FakeServer>();
  FakeCoordination admin_{server_};
  FakeCoordination leader_{server_};
  // Set: the scheduler talks through this instead. Outlives the scheduler's stop (TearDown).
  std::unique_ptr<coord::Coordination> via_;
  int32_t epoch_ = 0;
  Scheduler::Options options_;
  std::unique_ptr<Scheduler> scheduler_;
  std::mutex mu_;
  std::vector<std::string> fenced_;
};

}  // namespace drover::scheduler

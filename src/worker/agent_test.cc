#include "worker/agent.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "base/clock.h"
#include "base/eventually.h"
#include "coord/fake/fake_coordination.h"
#include "coord/forwarding.h"
#include "coord/paths.h"
#include "tasks/records.h"
#include "tasks/transitions.h"

namespace drover::worker {
namespace {

using namespace std::chrono_literals;
using coord::Code;
using coord::FaultMode;
using coord::OpKind;
using tasks::State;

constexpr const char* kWorker = "w1";

coord::CreateOp persistent(std::string path, std::string data) {
  return coord::CreateOp{std::move(path), std::move(data), coord::CreateMode::kPersistent, {}};
}

// Passes every call on to the worker's session and keeps the error of each multi that failed
// (with its op count), so a test can tell which op of which multi failed.
class MultiErrors final : public coord::ForwardingCoordination {
 public:
  using ForwardingCoordination::ForwardingCoordination;
  struct Failure {
    size_t ops;
    coord::Error error;
  };
  coord::Future<std::vector<coord::OpResult>> multi(std::vector<coord::Op> ops) override {
    size_t n = ops.size();
    auto r = inner_.multi(std::move(ops)).get();  // the fake answers at once
    if (!r) {
      std::lock_guard lock(mu_);
      failures_.push_back({n, r.error()});
    }
    return coord::Future<std::vector<coord::OpResult>>::ready(std::move(r));
  }
  std::vector<Failure> failures() const {
    std::lock_guard lock(mu_);
    return failures_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Failure> failures_;
};

class AgentTest : public ::testing::Test {
 protected:
  AgentTest() {
    for (const auto& dir : layout_.directories()) {
      EXPECT_TRUE(coord::ensurePath(admin_, dir).has_value()) << dir;
    }
    EXPECT_TRUE(coord::ensurePath(admin_, layout_.assignmentsOf(kWorker)).has_value());
    registerBuiltins(registry_);
    registry_.add("block", [this](TaskContext& ctx) {
      ++block_runs_;
      ctx.cancel.waitFor(60s);
      return HandlerResult::failure(std::string(cancelReasonName(ctx.cancel.reason())));
    });
    // Ignores cancellation: returns once the test releases it.
    registry_.add("gate", [this](TaskContext& ctx) {
      ++gate_runs_;
      base::eventually([&] { return release_.load(); }, 30s, 1ms);
      return HandlerResult::success(ctx.id);
    });
    options_.retry_backoff = base::Backoff{10s, 60s, 2.0, 0.0};
    options_.zk_backoff = base::Backoff{5ms, 50ms, 2.0, 0.0};
  }
  ~AgentTest() override {
    if (agent_) agent_->stop();
  }

  void startAgent() {
    coord::Coordination& session = via_ ? *via_ : worker_coord_;
    agent_ = std::make_unique<WorkerAgent>(session, layout_, kWorker, runner_, registry_, options_);
    agent_->start();
  }

  // What the leader's assign multi leaves behind: a status `assigned` and the assignment.
  // `legacy`: the assignment as written before it carried submitted_at (the worker must then
  // read the status).
  tasks::TaskSpec assign(std::string id, std::string type, Json payload = Json::object(),
                         int attempt = 1, int max_attempts = 3, double timeout_s = 0,
                         bool legacy = false, int priority = 5) {
    tasks::TaskSpec spec;
    spec.priority = priority;
    spec.id = std::move(id);
    spec.type = std::move(type);
    spec.payload = std::move(payload);
    spec.max_attempts = max_attempts;
    spec.timeout_s = timeout_s;
    tasks::TaskStatus status;
    status.spec = spec;
    status.state = State::kAssigned;
    status.attempts = attempt;
    status.worker = kWorker;
    status.submitted_at = 12345;
    Json a = tasks::toJson(tasks::Assignment{spec, attempt, status.submitted_at, status.error});
    if (legacy) a = Json{{"spec", tasks::toJson(spec)}, {"attempt", attempt}};
    auto r = admin_
                 .multi({persistent(layout_.status(spec.id), tasks::toJson(status).dump()),
                         persistent(layout_.assignment(kWorker, spec.id), a.dump())})
                 .get();
    EXPECT_TRUE(r.has_value()) << r.error().toString();
    return spec;
  }

  // Another actor's transition (a client's cancel, the leader's requeue), from admin_'s session.
  bool apply(tasks::TaskOps part) {
    tasks::Txn txn(layout_);
    txn.add(std::move(part));
    auto r = admin_.multi(std::move(txn).finish().ops).get();
    EXPECT_TRUE(r) << r.error().toString();
    return r.has_value();
  }

  std::optional<tasks::TaskStatus> status(const std::string& id) {
    auto node = server_->peek(layout_.status(id));
    if (!node) return std::nullopt;
    auto json = tasks::parseJson(node->data);
    if (!json) return std::nullopt;
    return tasks::statusFromJson(*json);
  }
  bool stateIs(const std::string& id, State state) {
    auto s = status(id);
    return s && s->state == state;
  }
  bool assignmentExists(const std::string& id) {
    return server_->peek(layout_.assignment(kWorker, id)).has_value();
  }
  // Every event recorded for `id`, in log order.
  std::vector<tasks::TaskEvent> events(const std::string& id) {
    std::vector<tasks::TaskEvent> out;
    std::string prefix = layout_.events() + "/";
    for (const auto& [path, data] : server_->dump()) {
      if (path.rfind(prefix, 0) != 0) continue;
      auto json = tasks::parseJson(data);
      if (!json || !json->is_array()) continue;
      for (const auto& e : *json) {
        auto ev = tasks::eventFromJson(e);
        if (ev && ev->id == id) out.push_back(*ev);
      }
    }
    return out;
  }
  size_t eventsIn(const std::string& id, State state) {
    size_t n = 0;
    for (const auto& e : events(id)) n += e.state == state ? 1 : 0;
    return n;
  }

  std::shared_ptr<coord::FakeServer> server_ = std::make_shared<coord::FakeServer>();
  coord::FakeCoordination admin_{server_};         // the test, playing leader and API
  coord::FakeCoordination worker_coord_{server_};  // the worker's session
  tasks::Layout layout_{"/drover"};
  HandlerRegistry registry_;
  std::atomic<int> block_runs_{0};
  std::atomic<int> gate_runs_{0};
  std::atomic<bool> release_{false};
  AgentOptions options_;
  Runner runner_{4};
  // Set: the agent talks through this instead of worker_coord_. Outlives the agent's stop.
  std::unique_ptr<coord::Coordination> via_;
  std::unique_ptr<WorkerAgent> agent_;
};

// The ids of the running events in log order.
std::vector<std::string> runningOrder(coord::FakeServer& server, const tasks::Layout& layout) {
  std::vector<std::string> out;
  std::string prefix = layout.events() + "/";
  for (const auto& [path, data] : server.dump()) {  // sorted by path: e-{sequence}
    if (path.rfind(prefix, 0) != 0) continue;
    auto json = tasks::parseJson(data);
    if (!json || !json->is_array()) continue;
    for (const auto& e : *json) {
      auto ev = tasks::eventFromJson(e);
      if (ev && ev->state == State::kRunning) out.push_back(ev->id);
    }
  }
  return out;
}

TEST_F(AgentTest, AssignmentsBeyondItsSlotsWaitUnstartedAndStartByPriority) {
  // The leader may assign slots + prefetch: the surplus is read but not marked running until a
  // slot frees, and then the highest priority goes first.
  options_.mark_running_after = 0ms;  // every start writes `running`: the log shows the order
  startAgent();
  for (int i = 0; i < 4; ++i) assign("g" + std::to_string(i), "gate");
  ASSERT_TRUE(base::eventually([&] { return gate_runs_ == 4; }));
  size_t gets = worker_coord_.callCount(OpKind::kGet);
  assign("low", "gate", Json::object(), 1, 3, 0, false, /*priority=*/1);
  assign("high", "gate", Json::object(), 1, 3, 0, false, /*priority=*/9);
  // Both were read (one get each), and neither started: every slot is taken.
  ASSERT_TRUE(base::eventually([&] { return worker_coord_.callCount(OpKind::kGet) >= gets + 2; }));
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().running == 4; }));
  EXPECT_TRUE(stateIs("low", State::kAssigned));
  EXPECT_TRUE(stateIs("high", State::kAssigned));
  EXPECT_EQ(gate_runs_, 4);

  release_ = true;
  ASSERT_TRUE(base::eventually(
      [&] { return stateIs("low", State::kSucceeded) && stateIs("high", State::kSucceeded); }));
  auto order = runningOrder(*server_, layout_);
  auto high = std::find(order.begin(), order.end(), "high");
  auto low = std::find(order.begin(), order.end(), "low");
  ASSERT_TRUE(high != order.end() && low != order.end());
  EXPECT_LT(high, low);
  EXPECT_EQ(eventsIn("low", State::kRunning), 1u);
}

TEST_F(AgentTest, AQueuedAssignmentThatVanishesIsDroppedWithoutRunning) {
  startAgent();
  for (int i = 0; i < 4; ++i) assign("g" + std::to_string(i), "gate");
  ASSERT_TRUE(base::eventually([&] { return gate_runs_ == 4; }));
  size_t gets = worker_coord_.callCount(OpKind::kGet);
  assign("queued", "echo");
  ASSERT_TRUE(base::eventually([&] { return worker_coord_.callCount(OpKind::kGet) > gets; }));
  // The leader (or a cancel) takes it back before it starts.
  ASSERT_TRUE(admin_.remove(layout_.assignment(kWorker, "queued"), coord::kAnyVersion).get());
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().dropped == 1; }));
  release_ = true;
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().succeeded == 4; }));
  EXPECT_EQ(eventsIn("queued", State::kRunning), 0u);
  EXPECT_TRUE(stateIs("queued", State::kAssigned));  // untouched by this worker
}

TEST_F(AgentTest, StartsThatFailTogetherAreRetriedOneByOne) {
  // Four assignments at once: their starts share a multi. One of them (b2) is cancelled after
  // the worker read it and before that multi lands, so the multi fails on b2's token check: the
  // others must still start and finish, and b2 must not start.
  options_.mark_running_after = 0ms;
  auto recorder_owned = std::make_unique<MultiErrors>(worker_coord_);
  MultiErrors& recorder = *recorder_owned;
  via_ = std::move(recorder_owned);
  startAgent();
  worker_coord_.beforeNextOn(OpKind::kMulti, layout_.assignment(kWorker, "b2"), [&] {
    tasks::TaskStatus cancelled = *status("b2");
    cancelled.state = State::kCancelled;
    EXPECT_TRUE(apply(tasks::cancel(layout_, *status("b2"), cancelled)));
  });
  std::vector<coord::Op> batch;
  for (int i = 0; i < 4; ++i) {
    tasks::TaskSpec spec;
    spec.id = "b" + std::to_string(i);
    spec.type = "echo";
    tasks::TaskStatus st;
    st.spec = spec;
    st.state = State::kAssigned;
    st.attempts = 1;
    st.worker = kWorker;
    batch.push_back(persistent(layout_.status(spec.id), tasks::toJson(st).dump()));
    batch.push_back(persistent(layout_.assignment(kWorker, spec.id),
                               tasks::toJson(tasks::Assignment{spec, 1, 1, ""}).dump()));
  }
  ASSERT_TRUE(admin_.multi(std::move(batch)).get());
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().succeeded == 3; }));
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().dropped == 1; }));
  EXPECT_EQ(worker_coord_.pendingFaults(), 0u);
  // The shared multi (the four starts) failed on b2's token; then b2's own start failed on its
  // token too, the fence. Decoded by the protocol module, which alone knows the op order.
  auto starts = [&](std::vector<std::string> ids) {
    tasks::Txn txn(layout_);
    for (const auto& id : ids) {
      tasks::TaskStatus s;
      s.spec.id = id;
      txn.add(tasks::start(layout_, kWorker, 0, s, true));
    }
    return std::move(txn).finish();
  };
  auto failures = recorder.failures();
  ASSERT_EQ(failures.size(), 2u);
  auto shared = starts({"b0", "b1", "b2", "b3"});
  EXPECT_EQ(failures[0].ops, shared.ops.size());
  EXPECT_EQ(failures[0].error.code(), Code::kNoNode);
  auto first = shared.decoder.failed(failures[0].error);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->step, tasks::Step::kToken);
  EXPECT_EQ(shared.ids[first->task], "b2");
  auto alone = starts({"b2"});
  EXPECT_EQ(failures[1].ops, alone.ops.size());
  EXPECT_EQ(failures[1].error.code(), Code::kNoNode);
  auto second = alone.decoder.failed(failures[1].error);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->step, tasks::Step::kToken);
  for (const char* id : {"b0", "b1", "b3"}) {
    EXPECT_TRUE(stateIs(id, State::kSucceeded)) << id;
    EXPECT_EQ(eventsIn(id, State::kRunning), 1u) << id;
  }
  EXPECT_TRUE(stateIs("b2", State::kCancelled));
  EXPECT_EQ(eventsIn("b2", State::kRunning), 0u);
  auto st = agent_->stats();
  EXPECT_EQ(st.succeeded, 3u);
  EXPECT_EQ(st.fenced_commits, 0u);
  EXPECT_EQ(st.running, 0);
}

TEST_F(AgentTest, RunsAnAssignmentAndCommitsSuccess) {
  startAgent();
  assign("t1", "echo", Json{{"x", 1}});
  ASSERT_TRUE(base::eventually([&] { return stateIs("t1", State::kSucceeded); }));
  auto s = *status("t1");
  EXPECT_EQ(s.result, (Json{{"x", 1}}));
  EXPECT_EQ(s.attempts, 1);
  EXPECT_EQ(s.worker, kWorker);
  EXPECT_EQ(s.submitted_at, 12345);  // carried by the assignment
  EXPECT_GT(s.started_at, 0);
  EXPECT_GE(s.finished_at, s.started_at);
  EXPECT_TRUE(s.error.empty());
  EXPECT_FALSE(assignmentExists("t1"));
  EXPECT_FALSE(server_->peek(layout_.job("t1")).has_value());
  // Done within mark_running_after: from `assigned` to its outcome in one write.
  EXPECT_EQ(eventsIn("t1", State::kRunning), 0u);
  EXPECT_EQ(eventsIn("t1", State::kSucceeded), 1u);
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().succeeded == 1; }));
  EXPECT_EQ(agent_->stats().running, 0);
  EXPECT_EQ(agent_->stats().fenced_commits, 0u);
}

TEST_F(AgentTest, WithoutTheGraceEveryRunIsMarkedRunningFirst) {
  options_.mark_running_after = 0ms;
  startAgent();
  assign("t1", "echo", Json{{"x", 1}});
  ASSERT_TRUE(base::eventually([&] { return stateIs("t1", State::kSucceeded); }));
  EXPECT_EQ(eventsIn("t1", State::kRunning), 1u);
  auto s = *status("t1");
  EXPECT_GT(s.started_at, 0);
  EXPECT_GE(s.finished_at, s.started_at);
}

TEST_F(AgentTest, ATaskStillRunningAfterTheGraceIsMarkedRunningWithItsStartTime) {
  options_.mark_running_after = 30ms;
  startAgent();
  int64_t before = base::wallMillis();
  assign("long", "gate");
  ASSERT_TRUE(base::eventually([&] { return gate_runs_ == 1; }));
  ASSERT_TRUE(base::eventually([&] { return stateIs("long", State::kRunning); }));
  auto running = *status("long");
  EXPECT_GE(running.started_at, before);
  EXPECT_EQ(running.worker, kWorker);
  release_ = true;
  ASSERT_TRUE(base::eventually([&] { return stateIs("long", State::kSucceeded); }));
  EXPECT_EQ(status("long")->started_at, running.started_at);  // the commit keeps it
  EXPECT_EQ(eventsIn("long", State::kRunning), 1u);
}

TEST_F(AgentTest, ARunWhoseAssignmentWentBeforeItWasMarkedRunningIsFenced) {
  // Launched at once; the `running` write finds the token gone: the run is stopped and its
  // result is not recorded.
  options_.mark_running_after = 50ms;
  startAgent();
  assign("taken", "block");
  ASSERT_TRUE(base::eventually([&] { return block_runs_ == 1; }));
  // The leader moves it (a version change of the token: deleted and recreated elsewhere).
  ASSERT_TRUE(admin_.remove(layout_.assignment(kWorker, "taken"), coord::kAnyVersion).get());
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().running == 0; }));
  EXPECT_TRUE(stateIs("taken", State::kAssigned));  // nothing of this run was recorded
  EXPECT_EQ(eventsIn("taken", State::kRunning), 0u);
}

TEST_F(AgentTest, PicksUpAssignmentsPresentAtStart) {
  assign("early", "noop");
  startAgent();
  ASSERT_TRUE(base::eventually([&] { return stateIs("early", State::kSucceeded); }));
}

TEST_F(AgentTest, RunningStatusIsWrittenBeforeTheRunEnds) {
  startAgent();
  assign("g", "gate");
  ASSERT_TRUE(base::eventually([&] { return stateIs("g", State::kRunning) && gate_runs_ == 1; }));
  auto s = *status("g");
  EXPECT_EQ(s.worker, kWorker);
  EXPECT_EQ(s.attempts, 1);
  EXPECT_TRUE(assignmentExists("g"));
  EXPECT_TRUE(base::eventually([&] { return agent_->stats().running == 1; }));
  release_ = true;
  ASSERT_TRUE(base::eventually([&] { return stateIs("g", State::kSucceeded); }));
}

TEST_F(AgentTest, FailureWithAttemptsLeftRequeuesWithBackoff) {
  startAgent();
  int64_t before = base::wallMillis();
  assign("f", "fail", Json{{"message", "boom"}}, /*attempt=*/1, /*max_attempts=*/3);
  ASSERT_TRUE(base::eventually([&] { return stateIs("f", State::kPending); }));
  auto s = *status("f");
  EXPECT_EQ(s.error, "boom");
  EXPECT_EQ(s.attempts, 1);
  EXPECT_EQ(s.finished_at, 0);
  EXPECT_FALSE(assignmentExists("f"));
  auto job_node = server_->peek(layout_.job("f"));
  ASSERT_TRUE(job_node.has_value());
  auto job = tasks::jobFromJson(*tasks::parseJson(job_node->data));
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->attempt, 2);
  EXPECT_EQ(job->spec.id, "f");
  EXPECT_GE(job->not_before, before + 10'000);  // backoff(1) = 10 s in this test
  EXPECT_LE(job->not_before, base::wallMillis() + 10'000);
  EXPECT_EQ(eventsIn("f", State::kPending), 1u);
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().retried == 1; }));
}

TEST_F(AgentTest, LastAttemptFailureIsTerminal) {
  startAgent();
  assign("f", "fail", Json{{"message", "boom"}}, /*attempt=*/3, /*max_attempts=*/3);
  ASSERT_TRUE(base::eventually([&] { return stateIs("f", State::kFailed); }));
  auto s = *status("f");
  EXPECT_EQ(s.error, "boom");
  EXPECT_EQ(s.attempts, 3);
  EXPECT_GT(s.finished_at, 0);
  EXPECT_FALSE(assignmentExists("f"));
  EXPECT_FALSE(server_->peek(layout_.job("f")).has_value());
  EXPECT_EQ(eventsIn("f", State::kFailed), 1u);
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().failed == 1; }));
}

TEST_F(AgentTest, ExecFailureKeepsTheOutputInTheStatus) {
  startAgent();
  assign("e", "exec", Json{{"argv", {"sh", "-c", "echo oops >&2; exit 4"}}}, 1, 1);
  ASSERT_TRUE(base::eventually([&] { return stateIs("e", State::kFailed); }));
  auto s = *status("e");
  EXPECT_NE(s.error.find("exited with code 4"), std::string::npos) << s.error;
  EXPECT_EQ(s.result["stderr"], "oops\n");
}

TEST_F(AgentTest, TimeoutFailsTheAttempt) {
  startAgent();
  assign("slow", "sleep", Json{{"ms", 60000}}, 1, 1, /*timeout_s=*/0.1);
  ASSERT_TRUE(base::eventually([&] { return stateIs("slow", State::kFailed); }));
  EXPECT_EQ(status("slow")->error, "timed out after 0.1 s");
}

TEST_F(AgentTest, UnknownTypeFailsWithoutRunning) {
  startAgent();
  assign("u", "no-such-type", Json::object(), 1, 3);
  ASSERT_TRUE(base::eventually([&] { return stateIs("u", State::kFailed); }));
  auto s = *status("u");
  EXPECT_NE(s.error.find("unknown task type"), std::string::npos) << s.error;
  EXPECT_FALSE(assignmentExists("u"));
  EXPECT_FALSE(server_->peek(layout_.job("u")).has_value());  // not retried
  EXPECT_EQ(eventsIn("u", State::kRunning), 0u);
  EXPECT_EQ(eventsIn("u", State::kFailed), 1u);
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().rejected == 1; }));
}

TEST_F(AgentTest, UndecodableAssignmentFailsWithoutRunning) {
  startAgent();
  tasks::TaskSpec spec{"bad", "noop"};
  tasks::TaskStatus st;
  st.spec = spec;
  st.state = State::kAssigned;
  ASSERT_TRUE(admin_
                  .multi({persistent(layout_.status("bad"), tasks::toJson(st).dump()),
                          persistent(layout_.assignment(kWorker, "bad"), "not json")})
                  .get()
                  .has_value());
  ASSERT_TRUE(base::eventually([&] { return stateIs("bad", State::kFailed); }));
  EXPECT_FALSE(assignmentExists("bad"));
}

TEST_F(AgentTest, AssignmentMovedAwayMidRunIsCancelledAndFenced) {
  startAgent();
  auto spec = assign("m", "block");
  ASSERT_TRUE(base::eventually([&] { return stateIs("m", State::kRunning) && block_runs_ == 1; }));
  // The leader declares the worker dead and moves the task: the token rule's requeue multi.
  tasks::TaskStatus moved = *status("m");
  moved.state = State::kPending;
  moved.attempts = 1;
  moved.worker = "";
  moved.error = "worker w1 died";
  ASSERT_TRUE(apply(
      tasks::requeue(layout_, kWorker, "m", coord::kAnyVersion, moved, tasks::Job{spec, 2, 0}, 1)));
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().fenced_commits == 1; }));
  EXPECT_EQ(runner_.runningCount(), 0);
  auto s = *status("m");
  EXPECT_EQ(s.state, State::kPending);
  EXPECT_EQ(s.error, "worker w1 died");
  auto job = tasks::jobFromJson(*tasks::parseJson(server_->peek(layout_.job("m"))->data));
  EXPECT_EQ(job->attempt, 2);
  // The requeue's own event; the worker's fenced retry would have added a second one.
  EXPECT_EQ(eventsIn("m", State::kPending), 1u);
  auto st = agent_->stats();
  EXPECT_EQ(st.succeeded + st.failed + st.retried, 0u);
  EXPECT_EQ(st.running, 0);
}

TEST_F(AgentTest, ClientCancelWhileRunningKillsTheRun) {
  startAgent();
  assign("c", "exec", Json{{"argv", {"sleep", "30"}}});
  ASSERT_TRUE(base::eventually([&] { return stateIs("c", State::kRunning); }));
  ASSERT_TRUE(base::eventually([&] { return runner_.runningCount() == 1; }));
  tasks::TaskStatus cancelled = *status("c");
  cancelled.state = State::kCancelled;
  ASSERT_TRUE(apply(tasks::cancel(layout_, *status("c"), cancelled)));
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().fenced_commits == 1; }));
  EXPECT_EQ(runner_.runningCount(), 0);
  EXPECT_EQ(status("c")->state, State::kCancelled);
}

TEST_F(AgentTest, AmbiguousCommitThatLandedRecordsOneOutcome) {
  startAgent();
  assign("a", "gate");
  ASSERT_TRUE(base::eventually([&] { return stateIs("a", State::kRunning) && gate_runs_ == 1; }));
  worker_coord_.failNext(OpKind::kMulti, Code::kConnectionLoss, FaultMode::kAfterApply);
  release_ = true;
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().succeeded == 1; }));
  EXPECT_EQ(worker_coord_.pendingFaults(), 0u);
  EXPECT_EQ(status("a")->state, State::kSucceeded);
  EXPECT_EQ(status("a")->result, "a");
  EXPECT_EQ(eventsIn("a", State::kSucceeded), 1u);
  EXPECT_EQ(agent_->stats().fenced_commits, 0u);
  EXPECT_FALSE(assignmentExists("a"));
}

TEST_F(AgentTest, AmbiguousRetryCommitCreatesOneJob) {
  registry_.add("gate-fail", [this](TaskContext&) {
    base::eventually([&] { return release_.load(); }, 30s, 1ms);
    return HandlerResult::failure("nope");
  });
  startAgent();
  assign("r", "gate-fail");
  ASSERT_TRUE(base::eventually([&] { return stateIs("r", State::kRunning); }));
  worker_coord_.failNext(OpKind::kMulti, Code::kConnectionLoss, FaultMode::kAfterApply);
  release_ = true;
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().retried == 1; }));
  EXPECT_EQ(worker_coord_.pendingFaults(), 0u);
  EXPECT_EQ(status("r")->state, State::kPending);
  EXPECT_EQ(eventsIn("r", State::kPending), 1u);
  EXPECT_TRUE(server_->peek(layout_.job("r")).has_value());
  EXPECT_EQ(agent_->stats().fenced_commits, 0u);
}

TEST_F(AgentTest, LostCommitIsSentAgain) {
  startAgent();
  assign("l", "gate");
  ASSERT_TRUE(base::eventually([&] { return stateIs("l", State::kRunning) && gate_runs_ == 1; }));
  worker_coord_.failNext(OpKind::kMulti, Code::kConnectionLoss, FaultMode::kBeforeApply);
  release_ = true;
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().succeeded == 1; }));
  EXPECT_EQ(worker_coord_.pendingFaults(), 0u);
  EXPECT_EQ(status("l")->state, State::kSucceeded);
  EXPECT_EQ(eventsIn("l", State::kSucceeded), 1u);
  EXPECT_FALSE(assignmentExists("l"));
}

TEST_F(AgentTest, AmbiguousStartRunsOnce) {
  worker_coord_.failNext(OpKind::kMulti, Code::kConnectionLoss, FaultMode::kAfterApply);
  startAgent();
  assign("s", "gate");
  ASSERT_TRUE(base::eventually([&] { return gate_runs_ == 1; }));
  ASSERT_TRUE(base::eventually([&] { return stateIs("s", State::kRunning); }));
  EXPECT_EQ(worker_coord_.pendingFaults(), 0u);
  release_ = true;
  ASSERT_TRUE(base::eventually([&] { return stateIs("s", State::kSucceeded); }));
  EXPECT_EQ(gate_runs_, 1);
  EXPECT_EQ(eventsIn("s", State::kRunning), 1u);
}

TEST_F(AgentTest, ManyTasksAtOnceAllCommit) {
  startAgent();
  std::vector<coord::Op> ops;
  for (int i = 0; i < 8; ++i) {
    std::string id = "n" + std::to_string(i);
    tasks::TaskSpec spec{id, i % 2 == 0 ? "gate" : "echo", Json{{"i", i}}};
    tasks::TaskStatus st;
    st.spec = spec;
    st.state = State::kAssigned;
    st.attempts = 1;
    st.worker = kWorker;
    ops.emplace_back(persistent(layout_.status(id), tasks::toJson(st).dump()));
    ops.emplace_back(persistent(layout_.assignment(kWorker, id),
                                tasks::toJson(tasks::Assignment{spec, 1}).dump()));
  }
  ASSERT_TRUE(admin_.multi(std::move(ops)).get().has_value());
  // 4 slots: the gates fill them; the rest wait for a slot and run once the gates open.
  ASSERT_TRUE(base::eventually([&] { return gate_runs_ == 4; }));
  release_ = true;
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().succeeded == 8; }));
  for (int i = 0; i < 8; ++i) {
    std::string id = "n" + std::to_string(i);
    EXPECT_EQ(status(id)->state, State::kSucceeded) << id;
    EXPECT_EQ(eventsIn(id, State::kSucceeded), 1u) << id;
  }
}

TEST_F(AgentTest, OneFencedTaskInABatchDoesNotBlockTheOthers) {
  startAgent();
  auto spec = assign("x1", "gate");
  assign("x2", "gate");
  assign("x3", "gate");
  ASSERT_TRUE(base::eventually([&] { return gate_runs_ == 3; }));
  // x1 is moved away; its run ignores the cancel and finishes with the others.
  tasks::TaskStatus cancelled = *status("x1");
  cancelled.state = State::kCancelled;
  ASSERT_TRUE(apply(tasks::cancel(layout_, *status("x1"), cancelled)));
  release_ = true;
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().succeeded == 2; }));
  ASSERT_TRUE(base::eventually([&] { return agent_->stats().fenced_commits == 1; }));
  EXPECT_EQ(status("x1")->state, State::kCancelled);
  EXPECT_EQ(status("x2")->state, State::kSucceeded);
  EXPECT_EQ(status("x3")->state, State::kSucceeded);
}

TEST_F(AgentTest, StartsWithoutReadingTheStatus) {
  startAgent();
  size_t gets = worker_coord_.callCount(OpKind::kGet);
  assign("q", "noop");
  ASSERT_TRUE(base::eventually([&] { return stateIs("q", State::kSucceeded); }));
  EXPECT_EQ(worker_coord_.callCount(OpKind::kGet), gets + 1);  // the assignment only
  EXPECT_EQ(status("q")->submitted_at, 12345);
}

TEST_F(AgentTest, AnAssignmentWithoutStatusFieldsIsStartedFromTheStatus) {
  startAgent();
  size_t gets = worker_coord_.callCount(OpKind::kGet);
  assign("old", "noop", Json::object(), 1, 3, 0, /*legacy=*/true);
  ASSERT_TRUE(base::eventually([&] { return stateIs("old", State::kSucceeded); }));
  EXPECT_EQ(worker_coord_.callCount(OpKind::kGet), gets + 2);  // the assignment and the status
  EXPECT_EQ(status("old")->submitted_at, 12345);
}

TEST_F(AgentTest, CommitWaitsOutADisconnection) {
  startAgent();
  assign("k", "gate");
  ASSERT_TRUE(base::eventually([&] { return stateIs("k", State::kRunning) && gate_runs_ == 1; }));
  worker_coord_.disconnect();
  size_t calls = worker_coord_.callCount(OpKind::kAny);
  release_ = true;
  // The commit fails with connection loss; the agent keeps re-reading to learn whether it landed.
  ASSERT_TRUE(base::eventually([&] { return worker_coord_.callCount(OpKind::kAny) >= calls + 5; }));
  EXPECT_EQ(status("k")->state, State::kRunning);
  worker_coord_.reconnect();
  ASSERT_TRUE(base::eventually([&] { return stateIs("k", State::kSucceeded); }));
  EXPECT_FALSE(agent_->dead());
  EXPECT_EQ(eventsIn("k", State::kSucceeded), 1u);
  // Still alive: new assignments run.
  assign("k2", "noop");
  ASSERT_TRUE(base::eventually([&] { return stateIs("k2", State::kSucceeded); }));
}

TEST_F(AgentTest, SessionExpiryKillsTheAgent) {
  startAgent();
  assign("d", "block");
  ASSERT_TRUE(base::eventually([&] { return stateIs("d", State::kRunning) && block_runs_ == 1; }));
  EXPECT_FALSE(agent_->dead());
  worker_coord_.expireSession(/*rebuild=*/true);
  ASSERT_TRUE(base::eventually([&] { return agent_->dead(); }));
  ASSERT_TRUE(base::eventually([&] { return runner_.runningCount() == 0; }));
  // Nothing is committed by a dead agent: the leader moves the task.
  EXPECT_EQ(status("d")->state, State::kRunning);
  EXPECT_TRUE(assignmentExists("d"));
  // New assignments are not picked up any more.
  assign("later", "noop");
  EXPECT_FALSE(base::eventually([&] { return !stateIs("later", State::kAssigned); }, 200ms));
}

TEST_F(AgentTest, StopCancelsRunsWithoutCommitting) {
  startAgent();
  assign("s1", "block");
  ASSERT_TRUE(base::eventually([&] { return stateIs("s1", State::kRunning) && block_runs_ == 1; }));
  agent_->stop();
  EXPECT_EQ(runner_.runningCount(), 0);
  EXPECT_EQ(status("s1")->state, State::kRunning);
  EXPECT_TRUE(assignmentExists("s1"));
  agent_->stop();  // idempotent
}

}  // namespace
}  // namespace drover::worker

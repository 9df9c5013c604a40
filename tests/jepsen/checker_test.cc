// The checker on synthetic runs: a clean run passes, and each planted violation is named with
// its task and property. A checker that passed everything would fail here.
#include "jepsen/checker.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace drover::jepsen {
namespace {

Json body(const std::string& id, int sleep_ms = 10) {
  return {{"id", id},
          {"type", "exec"},
          {"payload", {{"argv", {"sh", "-c", "echo $0", id, std::to_string(sleep_ms)}}}},
          {"max_attempts", 5}};
}

tasks::TaskSpec specOf(const Json& b) { return *tasks::parseSpec(b, tasks::SubmitLimits{}); }

// A small clean run: three tasks acknowledged, one unknown answer that never landed, a repeat
// (200) and a conflict (409), all succeeded once, the tree tidy.
class CheckerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 1; i <= 3; ++i) addTask("t" + std::to_string(i), 1, "w1");
    add(request("u1", "first", 0));  // no answer, never written
    add(request("t1", "repeat", 200));
    Request conflict = request("t2", "conflict", 409);
    conflict.body = body("t2", 99);
    add(conflict);
    tasks::WorkerInfo w1;
    w1.id = "w1";
    w1.slots = 2;
    w1.prefetch = 2;
    in_.tree.workers["w1"] = w1;
    in_.tree.assignments["w1"] = {};
    in_.tree.election = {"c_1"};
    in_.tree.epoch = 3;
    in_.max_epoch_seen = 3;
    in_.live_nodes = 1;
    in_.last_heal_ms = 1000;
    in_.drained_ms = 1500;
    in_.recovery_bound_ms = 30000;
    in_.faults.push_back({.kind = "kill-worker", .target = "n1", .start_ms = 100, .heal_ms = 900});
    in_.nodes.push_back({.name = "n1#1", .pid = 10, .ended_by_suite = true, .exit = "signal 9"});
  }

  Request request(const std::string& id, const std::string& kind, int status) {
    int64_t t = clock_ += 10;
    return Request{.client = 0,
                   .kind = kind,
                   .id = id,
                   .body = body(id),
                   .node = "n1",
                   .start_ms = t,
                   .end_ms = t + 5,
                   .status = status};
  }
  void add(Request r) { in_.requests.push_back(std::move(r)); }

  // An acknowledged task that ran `attempt` on `worker` and succeeded with that run's output.
  void addTask(const std::string& id, int attempt, const std::string& worker) {
    add(request(id, "first", 202));
    std::string line = id + " " + std::to_string(attempt) + " " + worker + " " +
                       std::to_string(1000 + in_.executions.size());
    in_.executions.push_back(*parseExecution(line));
    tasks::TaskStatus st;
    st.spec = specOf(body(id));
    st.state = tasks::State::kSucceeded;
    st.attempts = attempt;
    st.worker = worker;
    st.result = {{"exit_code", 0}, {"stdout", line + "\n"}, {"stderr", ""}};
    in_.tree.statuses.push_back({fmt::format("{:02x}", tasks::Layout::bucketIndex(id)), id, st});
    in_.tree.events.push_back({static_cast<int64_t>(in_.tree.events.size()),
                               {{id, tasks::State::kPending, 0, "", 0},
                                {id, tasks::State::kAssigned, attempt, worker, 0}}});
    in_.tree.events.push_back({static_cast<int64_t>(in_.tree.events.size()),
                               {{id, tasks::State::kSucceeded, attempt, worker, 0}}});
  }

  // The same run as protocol 2 would leave it: every task in one batch record, its outcomes from
  // the result records as its history (one terminal outcome each).
  static constexpr const char* kBatch = "1a22ee6/1a22ee6b0000f3a1";
  void asProtocol2() {
    in_.tree.protocol = 2;
    for (auto& s : in_.tree.statuses) {
      s.bucket = kBatch;
      const tasks::TaskStatus& st = *s.status;
      s.status->history = {{st.attempts, st.worker, 0, 0, st.state, st.error}};
    }
  }

  tasks::TaskStatus& statusOf(const std::string& id) {
    for (auto& s : in_.tree.statuses) {
      if (s.id == id) return *s.status;
    }
    throw std::runtime_error("no status " + id);
  }

  // True when a violation of `property` names `task` (and its evidence contains `needle`).
  static bool named(const CheckReport& r, const std::string& property, const std::string& task,
                    const std::string& needle = "") {
    return std::any_of(r.violations.begin(), r.violations.end(), [&](const Violation& v) {
      return v.property == property && v.task == task &&
             v.evidence.find(needle) != std::string::npos;
    });
  }

  CheckInput in_;
  int64_t clock_ = 0;
};

TEST_F(CheckerTest, ACleanRunPasses) {
  auto r = check(in_);
  EXPECT_TRUE(r.ok()) << summarize(r);
  EXPECT_EQ(r.acknowledged, 3);
  EXPECT_EQ(r.unknown, 1);
  EXPECT_EQ(r.conflicts_409, 1);
  EXPECT_EQ(r.lost, 0);
  EXPECT_EQ(r.worst_recovery_ms, 500);
  EXPECT_EQ(r.faults_by_kind.at("kill-worker"), 1);
  EXPECT_NE(summarize(r).find("PASS"), std::string::npos);
}

TEST_F(CheckerTest, AnAcknowledgedTaskMissingFromTheTreeIsLost) {
  std::erase_if(in_.tree.statuses, [](const StatusEntry& s) { return s.id == "t2"; });
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P1 lost", "t2", "no status")) << summarize(r);
  EXPECT_EQ(r.lost, 1);
  EXPECT_NE(summarize(r).find("VIOLATION P1 lost t2"), std::string::npos);
  EXPECT_NE(summarize(r).find("FAIL"), std::string::npos);
}

TEST_F(CheckerTest, AnAcknowledgedTaskStillPendingIsLost) {
  statusOf("t3").state = tasks::State::kPending;
  in_.tree.jobs.push_back({fmt::format("{:02x}", tasks::Layout::bucketIndex("t3")), "t3"});
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P1 lost", "t3", "still pending")) << summarize(r);
}

TEST_F(CheckerTest, ATaskNoClientSubmittedIsAPhantom) {
  tasks::TaskStatus st = statusOf("t1");
  st.spec.id = "ghost";
  in_.tree.statuses.push_back(
      {fmt::format("{:02x}", tasks::Layout::bucketIndex("ghost")), "ghost", st});
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P2 phantom", "ghost")) << summarize(r);
  EXPECT_EQ(r.phantom, 1);
}

TEST_F(CheckerTest, AnUnknownAnswerMayOrMayNotExist) {
  tasks::TaskStatus st = statusOf("t1");
  st.spec = specOf(body("u1"));
  st.result = Json::object();
  st.state = tasks::State::kFailed;
  in_.tree.statuses.push_back({fmt::format("{:02x}", tasks::Layout::bucketIndex("u1")), "u1", st});
  auto r = check(in_);
  EXPECT_TRUE(r.ok()) << summarize(r);
}

TEST_F(CheckerTest, TwoOutcomesCommittedAreADuplicateRecord) {
  in_.tree.events.push_back({99, {{"t1", tasks::State::kSucceeded, 2, "w2", 0}}});
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P3 one outcome", "t1", "two outcomes")) << summarize(r);
  EXPECT_EQ(r.duplicate_records, 1);
}

TEST_F(CheckerTest, TwoStatusNodesForOneTaskAreADuplicateRecord) {
  in_.tree.statuses.push_back({"00", "t1", statusOf("t1")});
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P3 one outcome", "t1", "more than one status")) << summarize(r);
}

TEST_F(CheckerTest, AResultNoLoggedExecutionWroteIsNamed) {
  statusOf("t2").result["stdout"] = "t2 1 w1 424242\n";
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P3 one outcome", "t2", "no logged execution")) << summarize(r);
}

TEST_F(CheckerTest, AResultFromAnotherAttemptsRunIsAZombieCommit) {
  // The run of attempt 1 on w1 wrote the result, but the status says attempt 2 on w2.
  statusOf("t2").attempts = 2;
  statusOf("t2").worker = "w2";
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P4 zombie rejected", "t2", "attempt 1")) << summarize(r);
  EXPECT_TRUE(named(r, "P4 zombie rejected", "t2", "run on w1")) << summarize(r);
}

TEST_F(CheckerTest, AChangeCommittedAfterTheOutcomeIsAZombieCommit) {
  in_.tree.events.push_back({99, {{"t3", tasks::State::kRunning, 1, "w9", 0}}});
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P4 zombie rejected", "t3", "after its outcome")) << summarize(r);
}

TEST_F(CheckerTest, AnAttemptGoingBackwardsOrAnEpochBehindIsNamed) {
  in_.tree.events.insert(in_.tree.events.begin(),
                         EventRecord{-1, {{"t1", tasks::State::kAssigned, 3, "w1", 0}}});
  in_.max_epoch_seen = 4;
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P5 one leader", "t1", "went back from 3 to")) << summarize(r);
  EXPECT_TRUE(named(r, "P5 one leader", "", "epoch 4")) << summarize(r);
}

TEST_F(CheckerTest, RecoveryAfterAHealStopsAtTheNextFault) {
  // Healed at 900; the first acknowledged submit after it (t1's repeat ends at 55) is before the
  // heal, so none counts; a second fault starting at 950 bounds the first one's window.
  in_.faults.push_back({.kind = "zk-kill", .target = "zk1", .start_ms = 950, .heal_ms = 2000});
  Request late = request("t1", "repeat", 200);
  late.start_ms = 1500;
  late.end_ms = 1600;
  add(late);
  auto r = check(in_);
  EXPECT_TRUE(r.ok()) << summarize(r);
  EXPECT_EQ(r.worst_first_ack_after_heal_ms, -1);  // 1500 started before zk-kill's heal
  in_.requests.back().start_ms = 2100;
  in_.requests.back().end_ms = 2150;
  r = check(in_);
  EXPECT_EQ(r.worst_first_ack_after_heal_ms, 150);
}

TEST_F(CheckerTest, DuplicateExecutionsAreCountedNotFailed) {
  in_.executions.push_back(*parseExecution("t1 2 w2 77"));
  auto r = check(in_);
  EXPECT_TRUE(r.ok()) << summarize(r);
  EXPECT_EQ(r.duplicate_executions, 1);
}

TEST_F(CheckerTest, AMissing409IsNamed) {
  // The conflicting spec was accepted instead of refused.
  for (auto& q : in_.requests) {
    if (q.kind == "conflict") q.status = 200;
  }
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P8 idempotent submit", "t2", "must be 409")) << summarize(r);
}

TEST_F(CheckerTest, A409ForTheRecordedSpecOrAMissingTaskIsNamed) {
  add(request("t3", "repeat", 409));
  add(request("nope", "conflict", 409));
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P8 idempotent submit", "t3", "recorded spec itself")) << summarize(r);
  EXPECT_TRUE(named(r, "P8 idempotent submit", "nope", "no task")) << summarize(r);
}

TEST_F(CheckerTest, ASecondCreateOfOneIdIsNamed) {
  add(request("t1", "repeat", 202));
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P8 idempotent submit", "t1", "created twice")) << summarize(r);
}

TEST_F(CheckerTest, ATokenLeftBehindOrTwoTokensAreNamed) {
  in_.tree.jobs.push_back({fmt::format("{:02x}", tasks::Layout::bucketIndex("t1")), "t1"});
  in_.tree.assignments["w1"] = {"t1"};
  in_.tree.jobs.push_back({"00", "orphan"});
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P9 structure", "t1", "both pending and assigned")) << summarize(r);
  EXPECT_TRUE(named(r, "P9 structure", "t1", "left behind")) << summarize(r);
  EXPECT_TRUE(named(r, "P9 structure", "orphan", "without a status")) << summarize(r);
}

TEST_F(CheckerTest, DirectoriesPastTheirCapAreNamed) {
  in_.events_keep = 2;
  in_.tree.assignments["w1"] = {"a", "b", "c", "d", "e"};
  in_.tree.assignments["gone"] = {"x"};
  in_.tree.bucket_sizes["/jobs/00"] = 20000;
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P9 structure", "", "/events holds")) << summarize(r);
  EXPECT_TRUE(named(r, "P9 structure", "", "over slots + prefetch = 4")) << summarize(r);
  EXPECT_TRUE(named(r, "P9 structure", "", "its worker is gone")) << summarize(r);
  EXPECT_TRUE(named(r, "P9 structure", "", "/jobs/00 holds 20000")) << summarize(r);
}

TEST_F(CheckerTest, AnOrphanElectionNodeIsNamed) {
  in_.tree.election.push_back("c_2");
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P9 structure", "", "election candidates")) << summarize(r);
}

TEST_F(CheckerTest, ASlowOrMissingDrainIsALivenessFailure) {
  in_.drained_ms = 60000;
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P6 liveness", "", "over the bound")) << summarize(r);
  in_.drained_ms = -1;
  r = check(in_);
  EXPECT_TRUE(named(r, "P6 liveness", "", "deadline")) << summarize(r);
}

TEST_F(CheckerTest, ANodeThatDiedOnItsOwnIsACrash) {
  in_.nodes.push_back(
      {.name = "n2#1", .pid = 11, .ended_by_suite = false, .exit = "signal 6 (Aborted)"});
  auto r = check(in_);
  EXPECT_TRUE(named(r, "crash", "n2#1", "died on its own")) << summarize(r);
}

TEST_F(CheckerTest, ACrashReportInANodeLogIsNamed) {
  std::string log =
      "[info] worker registered\n"
      "free(): double free detected in tcache 2\n"
      "src/x.cc:3:5: runtime error: signed integer overflow\n"
      "==1==ERROR: AddressSanitizer: heap-use-after-free\n"
      "WARNING: ThreadSanitizer: data race\n"
      "[info] all good\n";
  auto findings = scanLog(log);
  ASSERT_EQ(findings.size(), 4u);
  EXPECT_EQ(findings[0], "free(): double free detected in tcache 2");
  in_.nodes.push_back({.name = "n3#2",
                       .pid = 12,
                       .ended_by_suite = true,
                       .exit = "signal 9",
                       .log_findings = findings});
  auto r = check(in_);
  EXPECT_TRUE(named(r, "crash", "n3#2", "double free")) << summarize(r);
  EXPECT_TRUE(named(r, "crash", "n3#2", "ThreadSanitizer")) << summarize(r);
  EXPECT_TRUE(scanLog("[info] nothing to see\n").empty());
}

TEST_F(CheckerTest, AProtocol2RunWithRetriesPasses) {
  addTask("t4", 2, "w2");  // attempt 1 ended `pending` on w1 (retried), attempt 2 succeeded on w2
  asProtocol2();
  tasks::AttemptRecord retried{1, "w1", 0, 0, tasks::State::kPending, "exit 1"};
  auto& h = statusOf("t4").history;
  h.insert(h.begin(), retried);
  auto r = check(in_);
  EXPECT_TRUE(r.ok()) << summarize(r);
  EXPECT_EQ(r.duplicate_records, 0);
  EXPECT_EQ(r.succeeded, 4);
}

TEST_F(CheckerTest, TwoTerminalOutcomesInAProtocol2HistoryAreADuplicateRecord) {
  asProtocol2();
  statusOf("t1").history.push_back({2, "w2", 0, 0, tasks::State::kFailed, "zombie"});
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P3 one outcome", "t1", "2 terminal outcomes recorded")) << summarize(r);
  EXPECT_TRUE(named(r, "P3 one outcome", "t1", "failed (attempt 2, w2)")) << summarize(r);
  EXPECT_EQ(r.duplicate_records, 1);
}

TEST_F(CheckerTest, AnOutcomeAfterTheTerminalOneOrAnAttemptBackIsNamed) {
  asProtocol2();
  statusOf("t1").history.push_back({2, "w2", 0, 0, tasks::State::kPending, "worker w2 was lost"});
  statusOf("t2").history.insert(statusOf("t2").history.begin(),
                                {3, "w2", 0, 0, tasks::State::kPending, ""});
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P4 zombie rejected", "t1", "recorded after its outcome")) << summarize(r);
  EXPECT_TRUE(named(r, "P5 one leader", "t2", "from 3 to 1")) << summarize(r);
}

TEST_F(CheckerTest, AnAcknowledgedTaskWithoutOutcomeInProtocol2IsLost) {
  asProtocol2();
  tasks::TaskStatus& st = statusOf("t2");
  st.history.clear();  // its result record deleted: the batch record still lists it
  st.state = tasks::State::kPending;
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P1 lost", "t2", "no outcome of it is recorded")) << summarize(r);
  EXPECT_TRUE(named(r, "P9 structure", "t2", "no token")) << summarize(r);
  EXPECT_EQ(r.lost, 1);
}

TEST_F(CheckerTest, Protocol2TokensLeftBehindNameTheirHolders) {
  asProtocol2();
  in_.tree.jobs.push_back({kBatch, "t1"});
  in_.tree.assignments["w1"] = {"t1"};
  in_.tree.statuses.push_back({"1a22ee6/1a22ee6b0000f3a2", "t3", statusOf("t3")});
  auto r = check(in_);
  EXPECT_TRUE(named(r, "P9 structure", "t1", "/pending/1a22ee6/1a22ee6b0000f3a1 (waiting)"))
      << summarize(r);
  EXPECT_TRUE(named(r, "P9 structure", "t1", "/assignments/w1 (in a chunk)")) << summarize(r);
  EXPECT_TRUE(named(r, "P3 one outcome", "t3", "in more than one batch record")) << summarize(r);
  // Protocol 2 has no status buckets: a batch path is no misplaced status.
  EXPECT_FALSE(std::any_of(r.violations.begin(), r.violations.end(), [](const Violation& v) {
    return v.evidence.find("instead of") != std::string::npos;
  })) << summarize(r);
}

TEST_F(CheckerTest, HistoryLinesRoundTrip) {
  auto r = request("t9", "retry", 0);
  auto back = requestFromJson(toJson(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->id, "t9");
  EXPECT_EQ(back->kind, "retry");
  EXPECT_TRUE(back->unknown());
  EXPECT_EQ(toJson(r)["outcome"], "unknown");
  EXPECT_FALSE(parseExecution("only two").has_value());
}

}  // namespace
}  // namespace drover::jepsen

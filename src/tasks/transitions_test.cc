#include "tasks/transitions.h"

#include <gtest/gtest.h>

#include <memory>

#include "coord/fake/fake_coordination.h"
#include "coord/paths.h"

namespace drover::tasks {
namespace {

using coord::Code;

// Each transition applied to a fake tree: what it leaves there, and which task and step its
// decoder names when one of its ops fails.
class TransitionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_shared<coord::FakeServer>();
    coord_ = std::make_unique<coord::FakeCoordination>(server_);
    for (const auto& d : layout_.directories()) ASSERT_TRUE(coord::ensurePath(*coord_, d));
    ASSERT_TRUE(coord::ensurePath(*coord_, layout_.assignmentsOf("w1")));
    ASSERT_TRUE(coord_->create({layout_.epoch(), "", coord::CreateMode::kPersistent, {}}).get());
  }

  static TaskStatus pending(const std::string& id, int64_t at = 100) {
    TaskStatus s;
    s.spec.id = id;
    s.spec.type = "noop";
    s.submitted_at = at;
    return s;
  }

  coord::Result<std::vector<coord::OpResult>> run(Transaction& t) {
    return coord_->multi(t.ops).get();
  }

  // Applies `part` alone; asserts it landed.
  void apply(TaskOps part) {
    Txn txn(layout_);
    txn.add(std::move(part));
    auto t = std::move(txn).finish();
    auto r = run(t);
    ASSERT_TRUE(r) << r.error().toString();
  }

  std::optional<TaskStatus> status(const std::string& id) {
    auto r = coord_->get(layout_.status(id), nullptr).get();
    if (!r) return std::nullopt;
    auto j = parseJson(r->data);
    return j ? statusFromJson(*j) : std::nullopt;
  }
  bool exists(const std::string& path) {
    auto r = coord_->exists(path, nullptr).get();
    return r && r->has_value();
  }
  int32_t version(const std::string& path) {
    auto r = coord_->exists(path, nullptr).get();
    return r && *r ? (*r)->version : -1;
  }
  size_t eventRecords() {
    auto r = coord_->children(layout_.events(), nullptr).get();
    return r ? r->size() : 0;
  }

  // Submits, then assigns `id` to w1.
  void submitAndAssign(const std::string& id) {
    apply(submit(layout_, pending(id)));
    apply(assign(layout_, Job{pending(id).spec, 1, 0, 100}, version(layout_.job(id)), "w1", 200));
  }

  Layout layout_{"/drover"};
  std::shared_ptr<coord::FakeServer> server_;
  std::unique_ptr<coord::FakeCoordination> coord_;
};

TEST_F(TransitionsTest, SubmitCreatesStatusJobAndOneEventRecordForTheGroup) {
  Txn txn(layout_);
  EXPECT_EQ(txn.add(submit(layout_, pending("a"))), 0u);
  EXPECT_EQ(txn.add(submit(layout_, pending("b"))), 1u);
  auto t = std::move(txn).finish();
  EXPECT_EQ(t.ids, (std::vector<std::string>{"a", "b"}));
  ASSERT_TRUE(run(t));
  EXPECT_EQ(status("a")->state, State::kPending);
  EXPECT_TRUE(exists(layout_.job("b")));
  EXPECT_EQ(eventRecords(), 1u);

  // Submitting "c" and "a" again: the status create of the second task fails.
  Txn again(layout_);
  again.add(submit(layout_, pending("c")));
  again.add(submit(layout_, pending("a")));
  auto t2 = std::move(again).finish();
  auto r = run(t2);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kNodeExists);
  auto f = t2.decoder.failed(r.error());
  ASSERT_TRUE(f);
  EXPECT_EQ(f->step, Step::kStatus);
  EXPECT_EQ(t2.ids[f->task], "a");
  EXPECT_FALSE(exists(layout_.job("c")));  // all or nothing
}

TEST_F(TransitionsTest, SubmitOverALeftoverJobNamesTheJobStep) {
  ASSERT_TRUE(coord_->create({layout_.job("x"), "{}", coord::CreateMode::kPersistent, {}}).get());
  Txn txn(layout_);
  txn.add(submit(layout_, pending("x")));
  auto t = std::move(txn).finish();
  auto r = run(t);
  ASSERT_FALSE(r);
  auto f = t.decoder.failed(r.error());
  ASSERT_TRUE(f);
  EXPECT_EQ(f->step, Step::kJob);
}

TEST_F(TransitionsTest, AssignMovesTheTokenAndIsFencedByTheEpoch) {
  apply(submit(layout_, pending("a")));
  apply(submit(layout_, pending("b")));
  const int32_t jv = version(layout_.job("b"));

  // A stale leader (epoch version 0 moved to 1): op 0 fails, the decoder says kEpoch.
  ASSERT_TRUE(coord_->set(layout_.epoch(), "", coord::kAnyVersion).get());
  Txn stale = Txn::fenced(layout_, 0);
  stale.add(assign(layout_, Job{pending("b").spec, 1, 0, 100}, jv, "w1", 1));
  auto t0 = std::move(stale).finish();
  auto r0 = run(t0);
  ASSERT_FALSE(r0);
  EXPECT_EQ(t0.decoder.failed(r0.error())->step, Step::kEpoch);

  // The current leader; "b"'s job was rewritten since it was read (a stale version).
  Txn txn = Txn::fenced(layout_, 1);
  txn.add(assign(layout_, Job{pending("a").spec, 1, 0, 100}, version(layout_.job("a")), "w1", 2));
  txn.add(assign(layout_, Job{pending("b").spec, 1, 0, 100}, jv + 1, "w1", 2));
  auto t1 = std::move(txn).finish();
  auto r1 = run(t1);
  ASSERT_FALSE(r1);
  auto f = t1.decoder.failed(r1.error());
  ASSERT_TRUE(f);
  EXPECT_EQ(f->step, Step::kToken);
  EXPECT_EQ(t1.ids[f->task], "b");

  // A worker whose folder is gone: the assignment create fails.
  Txn gone = Txn::fenced(layout_, 1);
  gone.add(assign(layout_, Job{pending("a").spec, 1, 0, 100}, version(layout_.job("a")), "w9", 3));
  auto t2 = std::move(gone).finish();
  auto r2 = run(t2);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code(), Code::kNoNode);
  EXPECT_EQ(t2.decoder.failed(r2.error())->step, Step::kAssignment);

  Txn ok = Txn::fenced(layout_, 1);
  Job job{pending("a").spec, 2, 0, 100, "last error"};
  ok.add(assign(layout_, job, version(layout_.job("a")), "w1", 4));
  auto t3 = std::move(ok).finish();
  ASSERT_TRUE(run(t3));
  EXPECT_FALSE(exists(layout_.job("a")));
  auto s = status("a");
  EXPECT_EQ(s->state, State::kAssigned);
  EXPECT_EQ(s->worker, "w1");
  EXPECT_EQ(s->attempts, 2);
  EXPECT_EQ(s->error, "last error");
  auto a = coord_->get(layout_.assignment("w1", "a"), nullptr).get();
  ASSERT_TRUE(a);
  auto assignment = assignmentFromJson(*parseJson(a->data));
  EXPECT_EQ(assignment->attempt, 2);
  EXPECT_EQ(assignment->submitted_at, 100);
}

TEST_F(TransitionsTest, StartChecksTheAssignmentAndCanRecreateAMissingStatus) {
  submitAndAssign("a");
  const int32_t av = version(layout_.assignment("w1", "a"));
  TaskStatus running = *status("a");
  running.state = State::kRunning;
  running.started_at = 300;

  Txn moved(layout_);
  moved.add(start(layout_, "w1", av + 1, running, true));
  auto t0 = std::move(moved).finish();
  auto r0 = run(t0);
  ASSERT_FALSE(r0);
  EXPECT_EQ(t0.decoder.failed(r0.error())->step, Step::kToken);

  ASSERT_TRUE(coord_->remove(layout_.status("a"), coord::kAnyVersion).get());
  Txn missing(layout_);
  missing.add(start(layout_, "w1", av, running, true));
  auto t1 = std::move(missing).finish();
  auto r1 = run(t1);
  ASSERT_FALSE(r1);
  EXPECT_EQ(t1.decoder.failed(r1.error())->step, Step::kStatus);

  apply(start(layout_, "w1", av, running, false));
  EXPECT_EQ(status("a")->state, State::kRunning);
  EXPECT_EQ(version(layout_.assignment("w1", "a")), av);  // checked, not written
}

TEST_F(TransitionsTest, CommitConsumesTheAssignmentAndARetryCreatesTheNextJob) {
  submitAndAssign("a");
  submitAndAssign("b");
  TaskStatus done = *status("a");
  done.state = State::kSucceeded;
  done.result = Json{{"ok", 1}};
  done.finished_at = 500;
  TaskStatus again = *status("b");
  again.state = State::kPending;
  again.error = "boom";
  Job retry{again.spec, 2, 9'000, 100, "boom"};

  // A zombie's commit: "b"'s assignment was moved (wrong version): the decoder names "b".
  Txn zombie(layout_);
  zombie.add(
      commit(layout_, "w1", version(layout_.assignment("w1", "a")), done, std::nullopt, true, 500));
  zombie.add(
      commit(layout_, "w1", version(layout_.assignment("w1", "b")) + 1, again, retry, true, 500));
  auto t0 = std::move(zombie).finish();
  auto r0 = run(t0);
  ASSERT_FALSE(r0);
  auto f = t0.decoder.failed(r0.error());
  EXPECT_EQ(f->step, Step::kToken);
  EXPECT_EQ(t0.ids[f->task], "b");
  EXPECT_EQ(status("a")->state, State::kAssigned);  // nothing applied

  Txn txn(layout_);
  txn.add(
      commit(layout_, "w1", version(layout_.assignment("w1", "a")), done, std::nullopt, true, 500));
  txn.add(commit(layout_, "w1", version(layout_.assignment("w1", "b")), again, retry, true, 500));
  auto t1 = std::move(txn).finish();
  ASSERT_TRUE(run(t1));
  EXPECT_EQ(status("a")->state, State::kSucceeded);
  EXPECT_FALSE(exists(layout_.assignment("w1", "a")));
  EXPECT_EQ(status("b")->state, State::kPending);
  auto j = coord_->get(layout_.job("b"), nullptr).get();
  ASSERT_TRUE(j);
  auto job = jobFromJson(*parseJson(j->data));
  EXPECT_EQ(job->attempt, 2);
  EXPECT_EQ(job->not_before, 9'000);
}

TEST_F(TransitionsTest, CommitOfAHugeResultStoresANoteInstead) {
  submitAndAssign("a");
  TaskStatus done = *status("a");
  done.state = State::kSucceeded;
  done.result = std::string(kMaxStatusBytes + 10, 'x');
  apply(commit(layout_, "w1", version(layout_.assignment("w1", "a")), done, std::nullopt, true, 1));
  auto s = status("a");
  EXPECT_EQ(s->state, State::kSucceeded);
  EXPECT_EQ(s->result.value("truncated", false), true);
}

TEST_F(TransitionsTest, RequeueMovesALostTaskBackOrFailsItOrDropsALeftover) {
  submitAndAssign("a");
  submitAndAssign("b");
  submitAndAssign("c");
  TaskStatus back = *status("a");
  back.state = State::kPending;
  back.worker.clear();
  Job retry{back.spec, 2, 0, 100, "worker w1 was lost"};
  TaskStatus failed = *status("b");
  failed.state = State::kFailed;
  failed.finished_at = 7;

  Txn txn = Txn::fenced(layout_, 0);
  txn.add(requeue(layout_, "w1", "a", version(layout_.assignment("w1", "a")), back, retry, 7));
  txn.add(
      requeue(layout_, "w1", "b", version(layout_.assignment("w1", "b")), failed, std::nullopt, 7));
  txn.add(requeue(layout_, "w1", "c", version(layout_.assignment("w1", "c")), std::nullopt,
                  std::nullopt, 7));
  auto t = std::move(txn).finish();
  ASSERT_TRUE(run(t)) << "";
  EXPECT_EQ(status("a")->state, State::kPending);
  EXPECT_TRUE(exists(layout_.job("a")));
  EXPECT_EQ(status("b")->state, State::kFailed);
  EXPECT_FALSE(exists(layout_.job("b")));
  EXPECT_EQ(status("c")->state, State::kAssigned);  // a leftover: only the token went
  EXPECT_FALSE(exists(layout_.assignment("w1", "c")));

  // Requeue of a token the worker already consumed: kToken.
  Txn late = Txn::fenced(layout_, 0);
  late.add(requeue(layout_, "w1", "a", 0, back, retry, 8));
  auto t2 = std::move(late).finish();
  auto r2 = run(t2);
  ASSERT_FALSE(r2);
  EXPECT_EQ(t2.decoder.failed(r2.error())->step, Step::kToken);
}

TEST_F(TransitionsTest, CancelConsumesWhicheverTokenTheStatusNames) {
  apply(submit(layout_, pending("p")));
  submitAndAssign("r");
  for (const char* id : {"p", "r"}) {
    TaskStatus current = *status(id);
    TaskStatus cancelled = current;
    cancelled.state = State::kCancelled;
    cancelled.finished_at = 9;
    apply(cancel(layout_, current, cancelled));
    EXPECT_EQ(status(id)->state, State::kCancelled) << id;
  }
  EXPECT_FALSE(exists(layout_.job("p")));
  EXPECT_FALSE(exists(layout_.assignment("w1", "r")));

  // A status read before the assign: its job is gone, the cancel's token step fails.
  apply(submit(layout_, pending("s")));
  TaskStatus before = *status("s");
  apply(assign(layout_, Job{before.spec, 1, 0, 100}, version(layout_.job("s")), "w1", 1));
  TaskStatus cancelled = before;
  cancelled.state = State::kCancelled;
  Txn txn(layout_);
  txn.add(cancel(layout_, before, cancelled));
  auto t = std::move(txn).finish();
  auto r = run(t);
  ASSERT_FALSE(r);
  EXPECT_EQ(t.decoder.failed(r.error())->step, Step::kToken);
}

TEST_F(TransitionsTest, ExpireDeletesAtTheReadVersionAndWritesNoEvent) {
  apply(submit(layout_, pending("a")));
  apply(submit(layout_, pending("b")));
  const size_t records = eventRecords();
  Txn txn(layout_);
  txn.add(expire(layout_, "a", version(layout_.status("a"))));
  txn.add(expire(layout_, "b", version(layout_.status("b")) + 1));
  auto t = std::move(txn).finish();
  EXPECT_EQ(t.ops.size(), 2u);  // no event record
  auto r = run(t);
  ASSERT_FALSE(r);
  auto f = t.decoder.failed(r.error());
  EXPECT_EQ(f->step, Step::kRetained);
  EXPECT_EQ(t.ids[f->task], "b");
  EXPECT_EQ(eventRecords(), records);
}

TEST_F(TransitionsTest, DecoderSaysNothingForFailuresThatAreNotOneOps) {
  Txn txn(layout_);
  txn.add(submit(layout_, pending("a")));
  auto t = std::move(txn).finish();
  EXPECT_FALSE(t.decoder.failed(coord::Error(Code::kConnectionLoss, "lost")));
  EXPECT_FALSE(t.decoder.failed(coord::Error(Code::kNodeExists, "x", 99)));
}

TEST_F(TransitionsTest, FitsBoundsTasksAndBytesButAlwaysTakesAFirstPart) {
  Txn txn(layout_);
  TaskOps big = submit(layout_, pending("a"));
  EXPECT_TRUE(txn.fits(big, 1, 1));  // a first part always fits
  txn.add(std::move(big));
  TaskOps next = submit(layout_, pending("b"));
  EXPECT_FALSE(txn.fits(next, 1, 1 << 20));                        // task bound
  EXPECT_FALSE(txn.fits(next, 10, txn.bytes() + next.bytes - 1));  // byte bound
  EXPECT_TRUE(txn.fits(next, 10, txn.bytes() + next.bytes));
  // The estimate covers the request: the sum of the ops' bytes is below it.
  size_t before = txn.bytes() + next.bytes;
  txn.add(std::move(next));
  auto t = std::move(txn).finish();
  size_t sum = 0;
  for (const auto& op : t.ops) sum += opBytes(op);
  EXPECT_LE(sum, before);
  EXPECT_GE(sum + 64, before);
}

}  // namespace
}  // namespace drover::tasks

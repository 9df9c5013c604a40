#pragma once

// depends_on at submit (docs/ZNODES.md "Dependencies (issue 10): decisions"), as cases of the
// BatchStoreSuite: included after api/batch_store_suite.h, so they run on the fake tree (unit)
// and on a real ZooKeeper (integration) alike. Every refusal is a 400 that writes nothing.

#include "api/batch_store_suite.h"

namespace drover::api::testing {

inline tasks::TaskSpec dependent(std::string id, std::vector<std::string> deps) {
  tasks::TaskSpec s;
  s.id = std::move(id);
  s.type = "noop";
  s.depends_on = std::move(deps);
  return s;
}

TEST_P(BatchStoreSuite, DependsOnRefusalsWriteNothing) {
  auto refused = [&](const StoreResult<BatchResult>& r, const std::string& words) {
    ASSERT_FALSE(r) << words;
    EXPECT_EQ(r.error().failure, Failure::kBadRequest) << r.error().detail;
    EXPECT_NE(r.error().detail.find(words), std::string::npos) << r.error().detail;
  };
  const int multis = counting_->multis;
  refused(
      store_->submitBatch({dependent("a", {"b"}), dependent("b", {"c"}), dependent("c", {"a"})}),
      "a dependency cycle: a -> b -> c -> a");
  refused(store_->submitBatch({dependent("", {"#1"}), dependent("", {"#0"})}), "#0 -> #1 -> #0");
  refused(store_->submitBatch({dependent("self", {"self"})}), "itself");
  refused(store_->submitBatch({dependent("x", {}), dependent("y", {"#2"})}), "#2 is past");
  refused(store_->submitBatch({dependent("x", {}), dependent("y", {"nobody"})}),
          "no task 'nobody'");
  // A generated id whose batch does not exist is unknown as well.
  refused(store_->submitBatch({dependent("y", {"0123456789abcdef.3"})}), "no task");
  auto single = store_->submit(dependent("s", {"nobody"}));
  ASSERT_FALSE(single);
  EXPECT_EQ(single.error().failure, Failure::kBadRequest);
  auto index_ref = store_->submit(dependent("s", {"#1"}));
  ASSERT_FALSE(index_ref);
  EXPECT_EQ(index_ref.error().failure, Failure::kBadRequest);
  EXPECT_EQ(counting_->multis, multis);
  EXPECT_TRUE(batchNames().empty());
}

TEST_P(BatchStoreSuite, DependsOnExistingTasksByTheirOutcome) {
  ASSERT_TRUE(store_->submitBatch({spec("ok"), spec("bad"), spec("gone"), spec("open")}));
  registerWorker("wk");
  const std::string chunk = assign({refOf("ok"), refOf("bad")}, "wk");
  ASSERT_TRUE(commit("wk", chunk, {refOf("ok")}, State::kSucceeded));
  ASSERT_TRUE(commit("wk", chunk, {refOf("bad")}, State::kFailed));
  ASSERT_TRUE(store_->cancel("gone"));
  const auto before = batchNames().size();
  for (const std::string dep : {"bad", "gone"}) {
    auto r = store_->submitBatch({dependent("d-" + dep, {dep})});
    ASSERT_FALSE(r) << dep;
    EXPECT_EQ(r.error().failure, Failure::kBadRequest);
    EXPECT_NE(r.error().detail.find(dep), std::string::npos) << r.error().detail;
    EXPECT_FALSE(store_->submit(dependent("s-" + dep, {dep})));
  }
  EXPECT_EQ(batchNames().size(), before);
  // Succeeded counts as met, an open task may still succeed; both by id and in a whole DAG.
  auto single = store_->submit(dependent("after-ok", {"ok"}));
  ASSERT_TRUE(single) << single.error().detail;
  auto dag = store_->submitBatch({dependent("root", {"open"}), dependent("", {"root", "ok"}),
                                  dependent("leaf", {"#1", "root"})});
  ASSERT_TRUE(dag) << dag.error().detail;
  auto rec = store_->reader().batch(refOf("leaf").batch);
  ASSERT_TRUE(rec && *rec);
  // Stored as the client wrote it.
  EXPECT_EQ((*rec)->tasks[2].depends_on, (std::vector<std::string>{"#1", "root"}));
  // GET: waiting, with the ids not succeeded yet ("#1" spelled as the id it names).
  auto root = store_->get("root");
  ASSERT_TRUE(root) << root.error().detail;
  EXPECT_EQ(root->state, State::kWaiting);
  EXPECT_EQ(root->waiting_for, (std::vector<std::string>{"open"}));
  auto leaf = store_->get("leaf");
  ASSERT_TRUE(leaf);
  EXPECT_EQ(leaf->state, State::kWaiting);
  EXPECT_EQ(leaf->waiting_for, (std::vector<std::string>{dag->ids[1], "root"}));
  auto met = store_->get("after-ok");
  ASSERT_TRUE(met);
  EXPECT_EQ(met->state, State::kPending);
  EXPECT_TRUE(met->waiting_for.empty());
  EXPECT_FALSE(tasks::toJson(*met).contains("waiting_for"));
  EXPECT_EQ(tasks::toJson(*leaf).value("waiting_for", tasks::Json()),
            tasks::Json::array({dag->ids[1], "root"}));
  // Once its dependency succeeded, a dependent no longer waits for it.
  const std::string open_chunk = assign({refOf("open")}, "wk");
  ASSERT_TRUE(commit("wk", open_chunk, {refOf("open")}, State::kSucceeded));
  root = store_->get("root");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->state, State::kPending);
  EXPECT_TRUE(root->waiting_for.empty());
}

TEST_P(BatchStoreSuite, DependsOnOverHttp) {
  startHttp();
  auto post = [&](const std::string& path, const std::string& body) {
    return httpPost(path, body);
  };
  for (const char* bad :
       {R"({"type":"noop","depends_on":"a"})", R"({"type":"noop","depends_on":[1]})",
        R"({"type":"noop","depends_on":["a/b"]})", R"({"type":"noop","depends_on":["nobody"]})"}) {
    auto [code, body] = post("/v1/tasks", bad);
    EXPECT_EQ(code, 400) << bad;
    EXPECT_NE(body.value("detail", "").find("depends_on"), std::string::npos) << body.dump();
  }
  auto [cycle, why] = post("/v1/tasks/batch", R"({"tasks":[
      {"id":"p","type":"noop","depends_on":["q"]},{"id":"q","type":"noop","depends_on":["p"]}]})");
  EXPECT_EQ(cycle, 400);
  EXPECT_NE(why.value("detail", "").find("p -> q -> p"), std::string::npos) << why.dump();
  EXPECT_TRUE(batchNames().empty());
  auto [ok, ids] = post("/v1/tasks/batch", R"({"tasks":[
      {"id":"p","type":"noop"},{"type":"noop","depends_on":["p"]},
      {"type":"noop","depends_on":["#0","#1"]}]})");
  EXPECT_EQ(ok, 202) << ids.dump();
}

// Same id and spec is a 200 whatever happened since: a dependent resubmitted after its
// dependency failed is answered as it was first (not refused as a new dependent would be), a
// different spec under its id is still a 409, and nothing is written.
TEST_P(BatchStoreSuite, AnIdenticalResubmitOfADependentIsIdempotentAfterItsDependencyFailed) {
  ASSERT_TRUE(store_->submitBatch({spec("dep")}));
  auto first = store_->submit(dependent("child", {"dep"}));
  ASSERT_TRUE(first) << first.error().detail;
  ASSERT_TRUE(first->created);
  const std::vector<tasks::TaskSpec> batch = {dependent("b1", {"dep"}), dependent("b2", {"#0"})};
  ASSERT_TRUE(store_->submitBatch(batch));
  registerWorker("wk");
  const std::string chunk = assign({refOf("dep")}, "wk");
  ASSERT_TRUE(commit("wk", chunk, {refOf("dep")}, State::kFailed));
  const int multis = counting_->multis;
  const auto names = batchNames();

  auto again = store_->submit(dependent("child", {"dep"}));
  ASSERT_TRUE(again) << again.error().detail;
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->status.spec.id, "child");
  auto batch_again = store_->submitBatch(batch);
  ASSERT_TRUE(batch_again) << batch_again.error().detail;
  EXPECT_FALSE(batch_again->created);
  EXPECT_EQ(batch_again->ids, (std::vector<std::string>{"b1", "b2"}));

  auto other = dependent("child", {"dep"});
  other.priority = 9;
  auto differs = store_->submit(other);
  ASSERT_FALSE(differs);
  EXPECT_EQ(differs.error().failure, Failure::kConflict) << differs.error().detail;
  auto changed = batch;
  changed[1].priority = 9;
  auto batch_differs = store_->submitBatch(changed);
  ASSERT_FALSE(batch_differs);
  EXPECT_EQ(batch_differs.error().failure, Failure::kConflict) << batch_differs.error().detail;
  // A new dependent of the failed task, alone or beside existing ones, is still refused.
  auto fresh = store_->submit(dependent("late", {"dep"}));
  ASSERT_FALSE(fresh);
  EXPECT_EQ(fresh.error().failure, Failure::kBadRequest);
  auto mixed = store_->submitBatch({batch[0], dependent("late", {"dep"})});
  ASSERT_FALSE(mixed);
  EXPECT_EQ(mixed.error().failure, Failure::kBadRequest);
  EXPECT_EQ(counting_->multis, multis);
  EXPECT_EQ(batchNames(), names);
}

}  // namespace drover::api::testing

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

}  // namespace drover::api::testing

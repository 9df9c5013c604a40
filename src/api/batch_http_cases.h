#pragma once

// The REST API over protocol v2 records, as cases of the BatchStoreSuite: delayed submits
// (delay_s, run_at) and the names the API gives tasks without an id, through a real HTTP server.
// Included after api/batch_store_suite.h, so they run on the fake tree (unit) and on a real
// ZooKeeper (integration) alike.

#include "api/batch_store_suite.h"

namespace drover::api::testing {

TEST_P(BatchStoreSuite, DelayedTasksWaitWithTheirOwnTimesAndCancel) {
  startHttp();
  auto post = [&](const std::string& path, const std::string& body) {
    return httpPost(path, body);
  };
  httplib::Client& client = *http_client_;
  // Bad times are 400 and write nothing.
  for (const char* bad :
       {R"({"type":"noop","delay_s":1,"run_at":"2030-01-01T00:00:00Z"})",
        R"({"type":"noop","run_at":"2030-01-01 00:00"})", R"({"type":"noop","delay_s":40000000})",
        R"({"type":"noop","delay_s":-3})"}) {
    EXPECT_EQ(post("/v1/tasks", bad).first, 400) << bad;
    EXPECT_EQ(
        post("/v1/tasks/batch", fmt::format(R"({{"tasks":[{{"type":"noop"}},{}]}})", bad)).first,
        400)
        << bad;
  }
  EXPECT_TRUE(batchNames().empty());
  const int64_t before = base::wallMillis();
  auto [code, one] = post("/v1/tasks", R"({"id":"later","type":"noop","delay_s":3600})");
  EXPECT_EQ(code, 202) << one.dump();
  EXPECT_EQ(one.value("state", ""), "waiting");
  // A retried delay_s submit is the same task; the first time stands.
  auto [again, same] = post("/v1/tasks", R"({"id":"later","type":"noop","delay_s":3601})");
  EXPECT_EQ(again, 200) << same.dump();
  auto got = store_->get("later");
  ASSERT_TRUE(got) << got.error().detail;
  EXPECT_EQ(got->state, State::kWaiting);
  EXPECT_GE(got->spec.run_at, before + 3'600'000);
  EXPECT_LE(got->spec.run_at, base::wallMillis() + 3'600'000);
  auto shown = client.Get("/v1/tasks/later");
  ASSERT_TRUE(shown);
  auto shown_json = tasks::Json::parse(shown->body);
  EXPECT_EQ(shown_json.value("state", ""), "waiting");
  EXPECT_EQ(shown_json.value("run_at", ""), base::formatRfc3339(got->spec.run_at));
  // One batch, per-task times: one due already, one an hour ahead, one with none.
  auto [bcode, batch] = post("/v1/tasks/batch", R"({"tasks":[
      {"id":"past","type":"noop","run_at":"2020-01-01T00:00:00Z"},
      {"id":"hour","type":"noop","run_at":")" + base::formatRfc3339(before + 3'600'000) +
                                                    R"("},
      {"id":"now","type":"noop"}]})");
  EXPECT_EQ(bcode, 202) << batch.dump();
  EXPECT_EQ(store_->get("past")->state, State::kPending);
  EXPECT_EQ(store_->get("hour")->state, State::kWaiting);
  EXPECT_EQ(store_->get("now")->state, State::kPending);
  const TaskRef hour = refOf("hour");
  auto pending = other_->get(layout_.pending(hour.batch), nullptr).get();
  ASSERT_TRUE(pending);
  auto state = tasks::decodePending(pending->data);
  ASSERT_TRUE(state);
  EXPECT_EQ(state->waitingAt(hour.index)->not_before, before + 3'600'000);  // the leader's cue
  EXPECT_EQ(state->waitingAt(refOf("now").index)->not_before, 0);
  auto waiting = store_->list(State::kWaiting, 10, "");
  ASSERT_TRUE(waiting) << waiting.error().detail;
  std::set<std::string> ids;
  for (const auto& t : waiting->tasks) ids.insert(t.spec.id);
  EXPECT_EQ(ids, (std::set<std::string>{"later", "hour"}));
  // Cancellable while waiting.
  auto cancelled = store_->cancel("hour");
  ASSERT_TRUE(cancelled) << cancelled.error().detail;
  EXPECT_EQ(cancelled->status.state, State::kCancelled);
  EXPECT_EQ(store_->get("hour")->state, State::kCancelled);
  EXPECT_EQ(store_->get("later")->state, State::kWaiting);
}

TEST_P(BatchStoreSuite, HttpNamesTasksWithoutIdAfterTheirBatch) {
  startHttp();
  httplib::Client& client = *http_client_;
  auto one = client.Post("/v1/tasks", R"({"type":"noop"})", "application/json");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->status, 202) << one->body;
  const std::string id = tasks::Json::parse(one->body).value("id", "");
  EXPECT_TRUE(tasks::parseGeneratedId(id)) << id;
  auto got = client.Get("/v1/tasks/" + id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200) << got->body;
  EXPECT_EQ(tasks::Json::parse(got->body).value("state", ""), "pending");
  auto named = client.Post("/v1/tasks", R"({"id":"mine","type":"noop"})", "application/json");
  ASSERT_TRUE(named);
  EXPECT_EQ(tasks::Json::parse(named->body).value("id", ""), "mine");
  auto shaped = client.Post("/v1/tasks", fmt::format(R"({{"id":"{}","type":"noop"}})", id),
                            "application/json");
  ASSERT_TRUE(shaped);
  EXPECT_EQ(shaped->status, 400) << shaped->body;
  auto batch = client.Post("/v1/tasks/batch", R"({"tasks":[{"type":"noop"},{"type":"noop"}]})",
                           "application/json");
  ASSERT_TRUE(batch);
  EXPECT_EQ(batch->status, 202) << batch->body;
  auto ids = tasks::Json::parse(batch->body).at("ids");
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(tasks::parseGeneratedId(ids[1].get<std::string>())->index, 1u);
}

}  // namespace drover::api::testing

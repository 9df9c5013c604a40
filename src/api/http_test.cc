#include <future>

#include "api/http_test_helpers.h"
#include "base/ids.h"

namespace drover::api::testing {
namespace {

TEST_F(HttpTest, LivezAndReadyz) {
  auto c = client();
  auto live = c.Get("/livez");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  auto ready = c.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
}

TEST_F(HttpTest, UnknownRouteIs404AndWrongMethodIs405) {
  auto c = client();
  expectProblem(c.Get("/nope"), 404);
  auto r = c.Put("/v1/tasks", "{}", "application/json");
  expectProblem(r, 405);
  EXPECT_NE(r->get_header_value("Allow").find("POST"), std::string::npos);
  expectProblem(c.Post("/v1/cluster", "{}", "application/json"), 405);
  expectProblem(c.Delete("/v1/workers"), 405);
}

TEST_F(HttpTest, SubmitAnswers202WithLocationAndWritesOneBatchRecordAndEvent) {
  auto r = postJson("/v1/tasks", R"({"id":"t1","type":"echo","payload":{"a":1}})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202) << r->body;
  EXPECT_EQ(r->get_header_value("Location"), "/v1/tasks/t1");
  EXPECT_EQ(bodyOf(r), (Json{{"id", "t1"}, {"state", "pending"}}));

  auto st = statusOf("t1");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->state, State::kPending);
  EXPECT_EQ(st->attempts, 0);
  EXPECT_EQ(st->spec.payload, (Json{{"a", 1}}));
  EXPECT_GT(st->submitted_at, 0);
  EXPECT_EQ(countBatches(), 1u);
  EXPECT_EQ(countUnder(layout_.events()), 1u);

  auto got = client().Get("/v1/tasks/t1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(bodyOf(got)["state"], "pending");
  EXPECT_EQ(bodyOf(got)["type"], "echo");
}

TEST_F(HttpTest, IdenticalRepeatIs200AndWritesNothing) {
  const std::string body = R"({"id":"t1","type":"echo","payload":{"a":1}})";
  ASSERT_EQ(postJson("/v1/tasks", body)->status, 202);
  auto before = tree();
  auto r = postJson("/v1/tasks", body);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(bodyOf(r)["id"], "t1");
  EXPECT_EQ(tree(), before);
}

TEST_F(HttpTest, SameIdOtherSpecIs409AndWritesNothing) {
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"t1","type":"echo","payload":{"a":1}})")->status, 202);
  auto before = tree();
  expectProblem(postJson("/v1/tasks", R"({"id":"t1","type":"echo","payload":{"a":2}})"), 409);
  expectProblem(postJson("/v1/tasks", R"({"id":"t1","type":"noop"})"), 409);
  EXPECT_EQ(tree(), before);
}

TEST_F(HttpTest, IdempotencyKeyHeaderNamesTheTask) {
  auto r = postJson("/v1/tasks", R"({"type":"noop"})", {{"Idempotency-Key", "key-1"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(r->get_header_value("Location"), "/v1/tasks/key-1");
  EXPECT_TRUE(statusOf("key-1"));
  EXPECT_EQ(postJson("/v1/tasks", R"({"type":"noop"})", {{"Idempotency-Key", "key-1"}})->status,
            200);
  auto before = tree();
  expectProblem(
      postJson("/v1/tasks", R"({"id":"other","type":"noop"})", {{"Idempotency-Key", "key-1"}}),
      400);
  expectProblem(postJson("/v1/tasks", R"({"type":"noop"})", {{"Idempotency-Key", "a/b"}}), 400);
  EXPECT_EQ(tree(), before);
}

TEST_F(HttpTest, GeneratedIdWhenNoneGiven) {
  auto r = postJson("/v1/tasks", R"({"type":"noop"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  std::string id = bodyOf(r)["id"];
  EXPECT_TRUE(base::isValidName(id));
  EXPECT_TRUE(statusOf(id));
}

struct BadInput {
  std::string name;
  std::string method;
  std::string path;
  std::string content_type;
  std::string body;
  int status;
};

TEST_F(HttpTest, BadInputGets4xxWritesNothingAndServerKeepsServing) {
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"existing","type":"noop"})")->status, 202);
  std::string nested(10000, '[');
  nested += std::string(10000, ']');
  std::string deep_object;
  for (int i = 0; i < 10000; ++i) deep_object += R"({"a":)";
  deep_object += "1" + std::string(10000, '}');
  std::string long_id(10000, 'a');
  std::string oversized =
      R"({"type":"echo","payload":")" + std::string(2 * 1024 * 1024, 'x') + "\"}";
  std::vector<BadInput> cases = {
      {"malformed", "POST", "/v1/tasks", "application/json", R"({"type":"noop",)", 400},
      {"not json at all", "POST", "/v1/tasks", "application/json", "hello", 400},
      {"empty body", "POST", "/v1/tasks", "application/json", "", 400},
      {"array not object", "POST", "/v1/tasks", "application/json", "[1,2]", 400},
      {"nested arrays 10k", "POST", "/v1/tasks", "application/json", nested, 400},
      {"nested objects 10k", "POST", "/v1/tasks", "application/json", deep_object, 400},
      {"nested in payload 65", "POST", "/v1/tasks", "application/json",
       R"({"type":"echo","payload":)" + std::string(65, '[') + std::string(65, ']') + "}", 400},
      {"oversized", "POST", "/v1/tasks", "application/json", oversized, 413},
      {"slash id", "POST", "/v1/tasks", "application/json", R"({"id":"a/b","type":"noop"})", 400},
      {"dotdot id", "POST", "/v1/tasks", "application/json", R"({"id":"..","type":"noop"})", 400},
      {"dot id", "POST", "/v1/tasks", "application/json", R"({"id":".","type":"noop"})", 400},
      {"traversal id", "POST", "/v1/tasks", "application/json",
       R"({"id":"../../epoch","type":"noop"})", 400},
      {"nul id", "POST", "/v1/tasks", "application/json", R"({"id":"a\u0000b","type":"noop"})",
       400},
      {"control id", "POST", "/v1/tasks", "application/json", R"({"id":"a\nb","type":"noop"})",
       400},
      {"long id", "POST", "/v1/tasks", "application/json",
       R"({"id":")" + long_id + R"(","type":"noop"})", 400},
      {"number id", "POST", "/v1/tasks", "application/json", R"({"id":5,"type":"noop"})", 400},
      {"unknown type", "POST", "/v1/tasks", "application/json", R"({"type":"rm-rf"})", 400},
      {"missing type", "POST", "/v1/tasks", "application/json", R"({"id":"x"})", 400},
      {"unknown field", "POST", "/v1/tasks", "application/json", R"({"type":"noop","code":1})",
       400},
      {"bad priority", "POST", "/v1/tasks", "application/json", R"({"type":"noop","priority":10})",
       400},
      {"invalid utf8", "POST", "/v1/tasks", "application/json",
       "{\"type\":\"noop\",\"payload\":\"\xff\xfe\"}", 400},
      {"text/plain", "POST", "/v1/tasks", "text/plain", R"({"type":"noop"})", 415},
      {"form", "POST", "/v1/tasks", "application/x-www-form-urlencoded", "type=noop", 415},
      {"batch text/plain", "POST", "/v1/tasks/batch", "text/plain", R"({"tasks":[]})", 415},
      {"batch malformed", "POST", "/v1/tasks/batch", "application/json", "{", 400},
      {"batch nested", "POST", "/v1/tasks/batch", "application/json", nested, 400},
      {"batch not list", "POST", "/v1/tasks/batch", "application/json", R"({"tasks":5})", 400},
      {"batch empty", "POST", "/v1/tasks/batch", "application/json", R"({"tasks":[]})", 400},
      {"batch bad id", "POST", "/v1/tasks/batch", "application/json",
       R"({"tasks":[{"id":"ok1","type":"noop"},{"id":"a/b","type":"noop"}]})", 400},
      {"batch duplicate ids", "POST", "/v1/tasks/batch", "application/json",
       R"({"tasks":[{"id":"d1","type":"noop"},{"id":"d1","type":"noop"}]})", 400},
      {"get slash", "GET", "/v1/tasks/a%2Fb", "", "", 400},
      {"get dotdot", "GET", "/v1/tasks/%2E%2E", "", "", 400},
      {"get nul", "GET", "/v1/tasks/a%00b", "", "", 400},
      {"get newline", "GET", "/v1/tasks/a%0Ab", "", "", 400},
      {"get control", "GET", "/v1/tasks/a%01b", "", "", 400},
      {"get 200 chars", "GET", "/v1/tasks/" + std::string(200, 'a'), "", "", 400},
      {"get 10k chars", "GET", "/v1/tasks/" + long_id, "", "", 414},
      {"delete slash", "DELETE", "/v1/tasks/a%2F..%2Fepoch", "", "", 400},
      {"delete nul", "DELETE", "/v1/tasks/%00", "", "", 400},
      {"delete 200 chars", "DELETE", "/v1/tasks/" + std::string(200, 'b'), "", "", 400},
      {"wait zero", "GET", "/v1/tasks/existing?wait=0", "", "", 400},
      {"wait too long", "GET", "/v1/tasks/existing?wait=301", "", "", 400},
      {"wait nan", "GET", "/v1/tasks/existing?wait=nan", "", "", 400},
      {"wait text", "GET", "/v1/tasks/existing?wait=abc", "", "", 400},
      {"list bad state", "GET", "/v1/tasks?state=sleeping", "", "", 400},
      {"list limit 0", "GET", "/v1/tasks?limit=0", "", "", 400},
      {"list limit 1001", "GET", "/v1/tasks?limit=1001", "", "", 400},
      {"list limit text", "GET", "/v1/tasks?limit=ten", "", "", 400},
      {"list bad cursor", "GET", "/v1/tasks?cursor=..", "", "", 400},
      {"events bad id", "GET", "/v1/events?id=a%2Fb", "", "", 400},
      {"get missing", "GET", "/v1/tasks/missing", "", "", 404},
      {"delete missing", "DELETE", "/v1/tasks/missing", "", "", 404},
  };
  auto before = tree();
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto cli = client();
    httplib::Result r{nullptr, httplib::Error::Unknown};
    if (c.method == "POST") {
      r = cli.Post(c.path.c_str(), c.body, c.content_type.c_str());
    } else if (c.method == "GET") {
      r = cli.Get(c.path.c_str());
    } else {
      r = cli.Delete(c.path.c_str());
    }
    if (c.status == 413 && !r) {
      std::fprintf(stderr, "413 case: no response (%s)\n", httplib::to_string(r.error()).c_str());
      // The server may answer 413 and close before the client finished sending: acceptable.
      EXPECT_EQ(tree(), before);
      continue;
    }
    expectProblem(r, c.status);
    EXPECT_EQ(tree(), before);
    auto live = client().Get("/livez");
    ASSERT_TRUE(live);
    EXPECT_EQ(live->status, 200);
  }
  EXPECT_EQ(tree(), before);
}

// The ambiguity cases submit a first task to warm up: its time bucket then exists, so the lost
// multi was applied (in a new bucket the record's create fails and nothing is applied).
TEST_F(HttpTest, ConnectionLossAfterApplyAnswers202ExactlyOnce) {
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"warm","type":"noop"})")->status, 202);
  coord_->failNext(OpKind::kMulti, Code::kConnectionLoss, FaultMode::kAfterApply);
  auto r = postJson("/v1/tasks", R"({"id":"amb","type":"noop"})");
  EXPECT_EQ(coord_->pendingFaults(), 0u);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202) << r->body;
  // Settled without a second copy: one more record, task and event.
  EXPECT_EQ(countBatches(), 2u);
  EXPECT_EQ(countTasks(), 2u);
  EXPECT_EQ(statusOf("amb")->state, State::kPending);
  EXPECT_EQ(countUnder(layout_.events()), 2u);
}

TEST_F(HttpTest, ConnectionLossBeforeApplyRetriesAndAnswers202) {
  coord_->failNext(OpKind::kMulti, Code::kConnectionLoss, FaultMode::kBeforeApply);
  auto r = postJson("/v1/tasks", R"({"id":"lost","type":"noop"})");
  EXPECT_EQ(coord_->pendingFaults(), 0u);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202) << r->body;
  EXPECT_EQ(countBatches(), 1u);
  EXPECT_EQ(countTasks(), 1u);
  EXPECT_EQ(countUnder(layout_.events()), 1u);
}

TEST_F(HttpTest, DisconnectedSessionAnswers503AndReadyz503) {
  coord_->disconnect();
  auto before = tree();
  auto r = postJson("/v1/tasks", R"({"id":"t1","type":"noop"})");
  expectProblem(r, 503);
  EXPECT_FALSE(r->get_header_value("Retry-After").empty());
  expectProblem(client().Get("/readyz"), 503);
  expectProblem(client().Post("/v1/tasks/batch", R"({"tasks":[{"id":"b","type":"noop"}]})",
                              "application/json"),
                503);
  expectProblem(client().Get("/v1/tasks/t1"), 503);
  EXPECT_EQ(tree(), before);
  coord_->reconnect();
  EXPECT_EQ(client().Get("/readyz")->status, 200);
  EXPECT_EQ(postJson("/v1/tasks", R"({"id":"t1","type":"noop"})")->status, 202);
}

TEST_F(HttpTest, OutcomeStillUnknownAtTheDeadlineIs503) {
  // Warm up: the time bucket exists, so the lost multi below was applied.
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"warm","type":"noop"})")->status, 202);
  const size_t multis = coord_->callCount(OpKind::kMulti);
  // The reply is lost after the write landed, and every later multi is lost too: the submit
  // cannot learn what happened before its deadline and must not claim success.
  coord_->failNext(OpKind::kMulti, Code::kConnectionLoss, FaultMode::kAfterApply);
  for (int i = 0; i < 1000; ++i) coord_->failNext(OpKind::kMulti, Code::kConnectionLoss);
  auto r = postJson("/v1/tasks", R"({"id":"t1","type":"noop"})");
  expectProblem(r, 503);
  // The first fault fired, and so did one fault per multi the submit sent again.
  const size_t sent = coord_->callCount(OpKind::kMulti) - multis;
  EXPECT_GT(sent, 1u);
  EXPECT_EQ(coord_->pendingFaults(), 1001u - sent);
  EXPECT_EQ(countTasks(), 2u);  // it did land; a retry finds it
  while (coord_->pendingFaults() > 0) (void)coord_->multi({}).get();
  auto again = postJson("/v1/tasks", R"({"id":"t1","type":"noop"})");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  EXPECT_EQ(countTasks(), 2u);
}

TEST_F(HttpTest, BatchIsAllOrNothing) {
  const std::string batch =
      R"({"tasks":[{"id":"b1","type":"noop"},{"id":"b2","type":"echo","payload":[1]},{"id":"b3","type":"noop"}]})";
  auto r = postJson("/v1/tasks/batch", batch);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202) << r->body;
  EXPECT_EQ(bodyOf(r)["ids"], (Json{"b1", "b2", "b3"}));
  EXPECT_EQ(countTasks(), 3u);
  EXPECT_EQ(countBatches(), 1u);                // one batch record
  EXPECT_EQ(countUnder(layout_.events()), 1u);  // one event record for the whole multi
  for (auto id : {"b1", "b2", "b3"}) EXPECT_EQ(statusOf(id)->state, State::kPending) << id;

  EXPECT_EQ(postJson("/v1/tasks/batch", batch)->status, 200);
  auto before = tree();
  // One differs: 409, nothing written.
  expectProblem(postJson("/v1/tasks/batch",
                         R"({"tasks":[{"id":"b1","type":"noop"},{"id":"b2","type":"noop"}]})"),
                409);
  // One exists, others new: 409, none of the new ones written.
  expectProblem(postJson("/v1/tasks/batch",
                         R"({"tasks":[{"id":"n1","type":"noop"},{"id":"b1","type":"noop"}]})"),
                409);
  EXPECT_EQ(tree(), before);
  EXPECT_FALSE(statusOf("n1"));
}

// Issue 13.7: a payload that does not fit its built-in type is a 400 naming the field, and
// nothing is written (before, these were accepted and then failed on workers).
TEST_F(HttpTest, BadPayloadOfABuiltinTypeIs400NamingTheFieldAndWritesNothing) {
  struct Case {
    std::string body;
    std::string detail;
  };
  const std::vector<Case> cases = {
      {R"({"id":"p1","type":"exec","payload":{"argv":"echo hi"}})",
       "payload.argv: must be a non-empty array of strings"},
      {R"({"id":"p2","type":"exec"})", "payload.argv: is required"},
      {R"({"id":"p3","type":"exec","payload":{"argv":["ls"],"env":{"A":1}}})",
       "payload.env.A: must be a string"},
      {R"({"id":"p4","type":"sleep","payload":{"ms":"soon"}})", "payload.ms: must be a number"},
      {R"({"id":"p5","type":"sleep","payload":{"ms":-5}})", "payload.ms: must be a number"},
      {R"({"id":"p6","type":"sleep","payload":7})", "payload: must be an object"},
      {R"({"id":"p7","type":"fail","payload":{"message":42}})",
       "payload.message: must be a string"},
  };
  auto before = tree();
  for (const auto& c : cases) {
    SCOPED_TRACE(c.body);
    auto r = postJson("/v1/tasks", c.body);
    expectProblem(r, 400);
    EXPECT_EQ(bodyOf(r)["detail"].get<std::string>().rfind(c.detail, 0), 0u) << r->body;
  }
  EXPECT_EQ(tree(), before);
  EXPECT_EQ(countTasks(), 0u);
  // Good payloads of the same types are accepted.
  EXPECT_EQ(postJson("/v1/tasks", R"({"type":"exec","payload":{"argv":["echo","hi"]}})")->status,
            202);
  EXPECT_EQ(postJson("/v1/tasks", R"({"type":"sleep","payload":{"ms":10}})")->status, 202);
  EXPECT_EQ(postJson("/v1/tasks", R"({"type":"fail","payload":{"message":"x"}})")->status, 202);
  EXPECT_EQ(postJson("/v1/tasks", R"({"type":"echo","payload":"anything"})")->status, 202);
}

TEST_F(HttpTest, BatchWithABadPayloadIsRefusedWholeNamingItsIndex) {
  auto before = tree();
  auto r = postJson(
      "/v1/tasks/batch",
      R"({"tasks":[{"id":"q0","type":"noop"},{"id":"q1","type":"sleep","payload":{"ms":5}},)"
      R"({"id":"q2","type":"exec","payload":{"argv":"echo hi"}}]})");
  expectProblem(r, 400);
  EXPECT_EQ(bodyOf(r)["detail"], "tasks[2].payload.argv: must be a non-empty array of strings");
  EXPECT_EQ(tree(), before);
  EXPECT_FALSE(statusOf("q0"));
  EXPECT_FALSE(statusOf("q1"));
}

class HttpPendingCapTest : public ApiFixture {
 protected:
  void configureStore(StoreOptions& so) override {
    so.max_pending = 2;
    so.pending_ttl = 1h;  // one read of the leader's count: the store adds what it admits
  }
  // The leader's waiting count in /pending's data, written as a leader would: fenced.
  void publishWaiting(uint64_t waiting) {
    ASSERT_TRUE(other_->create({layout_.epoch(), "", coord::CreateMode::kPersistent, {}}).get());
    auto epoch = other_->set(layout_.epoch(), "leader", coord::kAnyVersion).get();
    ASSERT_TRUE(epoch);
    auto b = tasks::v2::Builder::fenced(layout_, epoch->version);
    b.publishWaiting(tasks::WaitingCount{waiting, base::wallMillis()});
    ASSERT_TRUE(other_->multi(std::move(b).finish().ops).get());
  }
};

TEST_F(HttpPendingCapTest, PastTheCapIs429WithRetryAfterAndWritesNothing) {
  publishWaiting(0);
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"f1","type":"noop"})")->status, 202);
  auto before = tree();
  auto batch = postJson("/v1/tasks/batch",
                        R"({"tasks":[{"id":"f2","type":"noop"},{"id":"f3","type":"noop"}]})");
  expectProblem(batch, 429);
  EXPECT_EQ(batch->get_header_value("Retry-After"), "1");
  EXPECT_EQ(tree(), before);
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"f2","type":"noop"})")->status, 202);
  before = tree();
  auto r = postJson("/v1/tasks", R"({"id":"f3","type":"noop"})");
  expectProblem(r, 429);
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  EXPECT_NE(bodyOf(r)["detail"].get<std::string>().find("the cap is 2"), std::string::npos);
  EXPECT_EQ(tree(), before);
  EXPECT_FALSE(statusOf("f3"));
}

TEST_F(HttpTest, BatchOverThePacketLimitIs413) {
  std::string payload(240 * 1024, 'x');
  Json tasks_json = Json::array();
  for (int i = 0; i < 4; ++i) {
    tasks_json.push_back(
        {{"id", "big" + std::to_string(i)}, {"type", "echo"}, {"payload", payload}});
  }
  auto before = tree();
  expectProblem(postJson("/v1/tasks/batch", Json{{"tasks", tasks_json}}.dump()), 413);
  EXPECT_EQ(tree(), before);
}

TEST_F(HttpTest, BatchAmbiguousWriteSettles) {
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"warm","type":"noop"})")->status, 202);
  coord_->failNext(OpKind::kMulti, Code::kConnectionLoss, FaultMode::kAfterApply);
  auto r = postJson("/v1/tasks/batch",
                    R"({"tasks":[{"id":"x1","type":"noop"},{"id":"x2","type":"noop"}]})");
  EXPECT_EQ(coord_->pendingFaults(), 0u);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202) << r->body;
  EXPECT_EQ(countBatches(), 2u);
  EXPECT_EQ(countTasks(), 3u);
}

TEST_F(HttpTest, WaitReturnsWhenAnotherClientFinishesTheTask) {
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"w1","type":"noop"})")->status, 202);
  size_t gets_before = coord_->callCount(OpKind::kGet);
  auto start = std::chrono::steady_clock::now();
  auto waiter =
      std::async(std::launch::async, [&] { return client().Get("/v1/tasks/w1?wait=20"); });
  // The long poll has resolved the id and armed its watches, then sleeps on them.
  ASSERT_TRUE(base::eventually([&] { return coord_->callCount(OpKind::kGet) > gets_before; }));
  assign("w1", "worker-a", State::kRunning);
  finish("w1", "worker-a", State::kSucceeded);
  auto r = waiter.get();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(bodyOf(r)["state"], "succeeded");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  // Watch-driven, not a polling loop: the id entry once, then one lookup (at most the pending
  // state, the chunk and the worker's record or the result record) at the start and after each
  // of the three changes (assign, start, commit).
  EXPECT_LE(coord_->callCount(OpKind::kGet) - gets_before, 13u);
}

TEST_F(HttpTest, WaitReturnsCurrentStateAtTheTimeout) {
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"w2","type":"noop"})")->status, 202);
  size_t gets_before = coord_->callCount(OpKind::kGet);
  auto start = std::chrono::steady_clock::now();
  auto r = client().Get("/v1/tasks/w2?wait=0.4");
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(bodyOf(r)["state"], "pending");
  EXPECT_GE(took, 390ms);
  EXPECT_LT(took, 5s);
  // One lookup (the id entry, the pending state, the batch record at most), then the watches:
  // no polling.
  EXPECT_LE(coord_->callCount(OpKind::kGet) - gets_before, 3u);
}

TEST_F(HttpTest, WaitOnATerminalTaskReturnsAtOnce) {
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"w3","type":"noop"})")->status, 202);
  ASSERT_EQ(client().Delete("/v1/tasks/w3")->status, 202);
  auto start = std::chrono::steady_clock::now();
  auto r = client().Get("/v1/tasks/w3?wait=30");
  ASSERT_TRUE(r);
  EXPECT_EQ(bodyOf(r)["state"], "cancelled");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_F(HttpTest, CancelPendingIsIdempotent) {
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"c1","type":"noop"})")->status, 202);
  auto r = client().Delete("/v1/tasks/c1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202) << r->body;
  EXPECT_EQ(r->get_header_value("Drover-Cancel"), "cancelled");
  EXPECT_EQ(bodyOf(r)["state"], "cancelled");
  EXPECT_FALSE(bodyOf(r)["finished_at"].is_null());
  EXPECT_EQ(statusOf("c1")->state, State::kCancelled);
  EXPECT_EQ(countUnder(layout_.events()), 2u);

  auto before = tree();
  auto again = client().Delete("/v1/tasks/c1");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 202);
  EXPECT_EQ(again->get_header_value("Drover-Cancel"), "already-finished");
  EXPECT_EQ(tree(), before);
}

TEST_F(HttpTest, CancelRunningTakesItFromTheWorkersChunk) {
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"c2","type":"sleep","payload":{"ms":1000}})")->status,
            202);
  assign("c2", "worker-a", State::kRunning);
  ASSERT_EQ(statusOf("c2")->state, State::kRunning);
  auto r = client().Delete("/v1/tasks/c2");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202) << r->body;
  EXPECT_EQ(bodyOf(r)["state"], "cancelled");
  EXPECT_EQ(statusOf("c2")->state, State::kCancelled);
  EXPECT_EQ(statusOf("c2")->worker, "worker-a");
  // The chunk held only c2: it is gone, so the worker's late commit cannot land.
  EXPECT_FALSE(server_->peek(layout_.chunk("worker-a", chunk_of_["c2"].second)));
  auto late = commit("c2", "worker-a", State::kSucceeded);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code(), Code::kNoNode);
  EXPECT_EQ(statusOf("c2")->state, State::kCancelled);
}

TEST_F(HttpTest, CancelAssignedTakesItFromTheWorkersChunk) {
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"c3","type":"noop"})")->status, 202);
  assign("c3", "worker-b", State::kAssigned);
  auto r = client().Delete("/v1/tasks/c3");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(bodyOf(r)["state"], "cancelled");
  EXPECT_FALSE(server_->peek(layout_.chunk("worker-b", chunk_of_["c3"].second)));
  EXPECT_EQ(statusOf("c3")->state, State::kCancelled);
}

TEST_F(HttpTest, CancelAfterTheWorkerFinishedReturnsTheOutcome) {
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"c4","type":"noop"})")->status, 202);
  assign("c4", "worker-a", State::kRunning);
  finish("c4", "worker-a", State::kSucceeded);
  auto before = tree();
  auto r = client().Delete("/v1/tasks/c4");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(bodyOf(r)["state"], "succeeded");
  EXPECT_EQ(r->get_header_value("Drover-Cancel"), "already-finished");
  EXPECT_EQ(tree(), before);
}

}  // namespace
}  // namespace drover::api::testing

#include "tasks/task.h"

#include <gtest/gtest.h>

#include "tasks/records.h"

namespace drover::tasks {
namespace {

SubmitLimits limits() { return SubmitLimits{}; }

TEST(ParseSpec, AcceptsAFullSpecAndAppliesDefaults) {
  auto spec = parseSpec(Json::parse(R"({"id":"a-1","type":"echo","payload":{"x":1}})"), limits());
  ASSERT_TRUE(spec) << spec.error().detail;
  EXPECT_EQ(spec->id, "a-1");
  EXPECT_EQ(spec->type, "echo");
  EXPECT_EQ(spec->payload["x"], 1);
  EXPECT_EQ(spec->priority, 5);
  EXPECT_EQ(spec->max_attempts, 3);
  EXPECT_EQ(spec->timeout_s, 0);
}

TEST(ParseSpec, GeneratesAnIdWhenMissing) {
  auto a = parseSpec(Json::parse(R"({"type":"noop"})"), limits());
  auto b = parseSpec(Json::parse(R"({"type":"noop"})"), limits());
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->id.size(), 32u);
  EXPECT_NE(a->id, b->id);
}

TEST(ParseSpec, RejectsBadInputNamingTheField) {
  struct Case {
    const char* body;
    const char* field;
  };
  for (const Case& c : std::vector<Case>{
           {R"([1,2])", ""},
           {R"({"type":"noop","bogus":1})", "bogus"},
           {R"({"id":"a/b","type":"noop"})", "id"},
           {R"({"id":"..","type":"noop"})", "id"},
           {R"({"id":".","type":"noop"})", "id"},
           {R"({"id":"","type":"noop"})", "id"},
           {R"({"id":7,"type":"noop"})", "id"},
           {R"({"id":"a\u0000b","type":"noop"})", "id"},
           {R"({"id":"a\nb","type":"noop"})", "id"},
           {R"({})", "type"},
           {R"({"type":""})", "type"},
           {R"({"type":"x y"})", "type"},
           {R"({"type":"noop","priority":10})", "priority"},
           {R"({"type":"noop","priority":-1})", "priority"},
           {R"({"type":"noop","priority":"high"})", "priority"},
           {R"({"type":"noop","priority":1.5})", "priority"},
           {R"({"type":"noop","max_attempts":0})", "max_attempts"},
           {R"({"type":"noop","timeout_s":-1})", "timeout_s"},
           {R"({"type":"noop","timeout_s":"1"})", "timeout_s"},
       }) {
    auto spec = parseSpec(Json::parse(c.body), limits());
    ASSERT_FALSE(spec) << c.body;
    EXPECT_EQ(spec.error().field, c.field) << c.body;
    EXPECT_FALSE(spec.error().detail.empty());
  }
  auto long_id = parseSpec(Json{{"id", std::string(129, 'a')}, {"type", "noop"}}, limits());
  EXPECT_FALSE(long_id);
  auto max_id = parseSpec(Json{{"id", std::string(128, 'a')}, {"type", "noop"}}, limits());
  EXPECT_TRUE(max_id);
}

TEST(ParseSpec, EnforcesThePayloadCap) {
  SubmitLimits small;
  small.max_payload_bytes = 20;
  EXPECT_TRUE(parseSpec(Json{{"type", "echo"}, {"payload", "short"}}, small));
  auto big = parseSpec(Json{{"type", "echo"}, {"payload", std::string(100, 'x')}}, small);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().field, "payload");
}

TEST(ParseSpec, ConsultsTheKnownTypes) {
  auto known = [](std::string_view t) { return t == "noop"; };
  EXPECT_TRUE(parseSpec(Json{{"type", "noop"}}, limits(), known));
  auto spec = parseSpec(Json{{"type", "nope"}}, limits(), known);
  ASSERT_FALSE(spec);
  EXPECT_EQ(spec.error().field, "type");
}

TEST(Codec, RoutingFieldsAreCheckedSortedAndDefaulted) {
  auto spec = parseSpec(Json{{"type", "noop"}, {"queue", "etl"}, {"labels", {"ssd", "gpu", "ssd"}}},
                        limits());
  ASSERT_TRUE(spec);
  EXPECT_EQ(spec->queue, "etl");
  EXPECT_EQ(spec->labels, (std::vector<std::string>{"gpu", "ssd"}));  // one spelling per set
  auto plain = parseSpec(Json{{"type", "noop"}}, limits());
  EXPECT_EQ(plain->queue, "default");
  EXPECT_TRUE(plain->labels.empty());
  for (const Json& bad :
       {Json{{"type", "noop"}, {"queue", ""}}, Json{{"type", "noop"}, {"queue", 3}},
        Json{{"type", "noop"}, {"queue", "a/b"}}, Json{{"type", "noop"}, {"labels", "gpu"}},
        Json{{"type", "noop"}, {"labels", {1}}},
        Json{{"type", "noop"}, {"labels", {"ok", ".."}}}}) {
    auto r = parseSpec(bad, limits());
    ASSERT_FALSE(r) << bad.dump();
    EXPECT_TRUE(r.error().field == "queue" || r.error().field == "labels") << bad.dump();
  }
  Json many = Json::array();
  for (int i = 0; i < 17; ++i) many.push_back("l" + std::to_string(i));
  EXPECT_EQ(parseSpec(Json{{"type", "noop"}, {"labels", many}}, limits()).error().field, "labels");
  // A record written before routing reads as the default queue, no labels.
  Json old = toJson(*plain);
  old.erase("queue");
  old.erase("labels");
  EXPECT_EQ(specFromJson(old)->queue, "default");
  EXPECT_EQ(*specFromJson(old), *plain);
}

TEST(Codec, StatusRoundTrips) {
  TaskStatus s;
  s.spec = TaskSpec{"t1", "echo", Json{{"a", 1}}, 7, 2, 1.5, "etl", {"gpu"}};
  s.state = State::kSucceeded;
  s.attempts = 2;
  s.worker = "w1";
  s.result = Json{{"ok", true}};
  s.submitted_at = 10;
  s.started_at = 11;
  s.finished_at = 12;
  auto back = statusFromJson(toJson(s));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->spec, s.spec);
  EXPECT_EQ(back->state, s.state);
  EXPECT_EQ(back->attempts, 2);
  EXPECT_EQ(back->worker, "w1");
  EXPECT_EQ(back->result, s.result);
  EXPECT_EQ(back->finished_at, 12);
  EXPECT_FALSE(statusFromJson(Json{{"id", "x"}}));
  EXPECT_FALSE(statusFromJson(Json{{"id", "x"}, {"type", "noop"}, {"state", "bogus"}}));
}

TEST(Codec, WorkerAndEventRoundTrip) {
  WorkerInfo w{"w1", "h", 42, 4, {"gpu"}, "127.0.0.1:1", 5, 12, {"default", "ml"}, {"noop"}};
  auto wb = workerFromJson(toJson(w));
  ASSERT_TRUE(wb);
  EXPECT_EQ(wb->slots, 4);
  EXPECT_EQ(wb->prefetch, 12);
  Json older = toJson(w);
  older.erase("prefetch");  // a worker that predates prefetch: the leader gives it none
  EXPECT_EQ(workerFromJson(older)->prefetch, 0);
  older["prefetch"] = -3;
  EXPECT_EQ(workerFromJson(older)->prefetch, 0);
  EXPECT_EQ(wb->labels, std::vector<std::string>{"gpu"});
  EXPECT_EQ(wb->queues, (std::vector<std::string>{"default", "ml"}));
  EXPECT_EQ(wb->types, std::vector<std::string>{"noop"});
  older.erase("queues");  // a worker that predates routing: serves default, runs any type
  older.erase("types");
  EXPECT_EQ(workerFromJson(older)->queues, std::vector<std::string>{"default"});
  EXPECT_TRUE(workerFromJson(older)->types.empty());
  auto e = eventFromJson(toJson(TaskEvent{"t", State::kRunning, 1, "w1", 3}));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->state, State::kRunning);
  EXPECT_EQ(e->worker, "w1");
  EXPECT_FALSE(workerFromJson(Json::array()));
  EXPECT_FALSE(parseJson("{not json"));
  EXPECT_TRUE(parseJson("{}"));
}

TEST(ParseSpec, RunAtAndDelayBecomeOneWallClockTime) {
  const int64_t now = 1'796'186'625'000;  // 2026-12-02T04:43:45Z
  auto at = parseSpec(Json::parse(R"({"type":"noop","run_at":"2026-12-02T05:43:45.5+01:00"})"),
                      limits(), nullptr, now);
  ASSERT_TRUE(at) << at.error().detail;
  EXPECT_EQ(at->run_at, now + 500);
  auto delay = parseSpec(Json::parse(R"({"type":"noop","delay_s":2.25})"), limits(), nullptr, now);
  ASSERT_TRUE(delay) << delay.error().detail;
  EXPECT_EQ(delay->run_at, now + 2250);
  auto zero = parseSpec(Json::parse(R"({"type":"noop","delay_s":0})"), limits(), nullptr, now);
  ASSERT_TRUE(zero);
  EXPECT_EQ(zero->run_at, now);
  auto none = parseSpec(Json::parse(R"({"type":"noop"})"), limits(), nullptr, now);
  ASSERT_TRUE(none);
  EXPECT_EQ(none->run_at, 0);
  // The time survives the codec (batch records, chunks) exactly, as RFC 3339 in UTC.
  Json j = toJson(*at);
  EXPECT_EQ(j["run_at"], "2026-12-02T04:43:45.500Z");
  EXPECT_EQ(specFromJson(j), *at);
  EXPECT_FALSE(toJson(*none).contains("run_at"));
}

TEST(ParseSpec, RefusesBadTimes) {
  const int64_t now = 1'796'186'625'000;
  for (const char* body : {
           R"({"type":"noop","run_at":"2026-12-02T05:00:00Z","delay_s":1})",
           R"({"type":"noop","run_at":"2026-12-02T05:00:00"})",
           R"({"type":"noop","run_at":"soon"})",
           R"({"type":"noop","run_at":1796186625})",
           R"({"type":"noop","run_at":"2027-12-04T00:00:00Z"})",
           R"({"type":"noop","delay_s":-1})",
           R"({"type":"noop","delay_s":"5"})",
           R"({"type":"noop","delay_s":40000000})",
       }) {
    auto spec = parseSpec(Json::parse(body), limits(), nullptr, now);
    ASSERT_FALSE(spec) << body;
    EXPECT_TRUE(spec.error().field == "run_at" || spec.error().field == "delay_s") << body;
  }
}

TEST(ParseSpec, SameTaskIgnoresOnlyTheTime) {
  TaskSpec a{.id = "x", .type = "noop"};
  TaskSpec b = a;
  b.run_at = 42;
  EXPECT_TRUE(sameTask(a, b));
  b.priority = 7;
  EXPECT_FALSE(sameTask(a, b));
}

TEST(States, NamesRoundTrip) {
  for (State s : {State::kPending, State::kAssigned, State::kRunning, State::kSucceeded,
                  State::kFailed, State::kCancelled, State::kWaiting}) {
    EXPECT_EQ(parseState(stateName(s)), s);
  }
  EXPECT_TRUE(isTerminal(State::kCancelled));
  EXPECT_FALSE(isTerminal(State::kRunning));
  EXPECT_FALSE(isTerminal(State::kWaiting));
  EXPECT_EQ(stateName(State::kWaiting), "waiting");
  EXPECT_FALSE(parseState("Pending"));
}

}  // namespace
}  // namespace drover::tasks

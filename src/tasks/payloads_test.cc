#include "tasks/payloads.h"

#include <gtest/gtest.h>

namespace drover::tasks {
namespace {

// The field a validator names for `payload`, or "" when it passes.
std::string fieldOf(const PayloadValidator& validate, const Json& payload) {
  auto e = validate(payload);
  return e ? e->field : "";
}

TEST(SleepPayload, AcceptsMsInRangeAndNoMs) {
  EXPECT_FALSE(validateSleepPayload(Json::object()));
  EXPECT_FALSE(validateSleepPayload(Json{{"ms", 0}}));
  EXPECT_FALSE(validateSleepPayload(Json{{"ms", 1500}}));
  EXPECT_FALSE(validateSleepPayload(Json{{"ms", 2.5}}));
  EXPECT_FALSE(validateSleepPayload(Json{{"ms", kMaxSleepMs}}));
}

TEST(SleepPayload, RefusesWhatTheHandlerCannotRun) {
  EXPECT_EQ(fieldOf(validateSleepPayload, Json{{"ms", "soon"}}), "payload.ms");
  EXPECT_EQ(fieldOf(validateSleepPayload, Json{{"ms", -1}}), "payload.ms");
  EXPECT_EQ(fieldOf(validateSleepPayload, Json{{"ms", kMaxSleepMs + 1}}), "payload.ms");
  EXPECT_EQ(fieldOf(validateSleepPayload, Json{{"ms", nullptr}}), "payload.ms");
  EXPECT_EQ(fieldOf(validateSleepPayload, Json{{"ms", {1}}}), "payload.ms");
  EXPECT_EQ(fieldOf(validateSleepPayload, Json{{"ms", 1}, {"seconds", 1}}), "payload.seconds");
  EXPECT_EQ(fieldOf(validateSleepPayload, Json(5)), "payload");
  EXPECT_EQ(fieldOf(validateSleepPayload, Json::array()), "payload");
  auto e = validateSleepPayload(Json{{"ms", "soon"}});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->detail, "must be a number of milliseconds from 0 to 86400000");
}

TEST(FailPayload, MessageIsAnOptionalString) {
  EXPECT_FALSE(validateFailPayload(Json::object()));
  EXPECT_FALSE(validateFailPayload(Json{{"message", "bad thing"}}));
  EXPECT_FALSE(validateFailPayload(Json{{"message", ""}}));
  EXPECT_EQ(fieldOf(validateFailPayload, Json{{"message", 7}}), "payload.message");
  EXPECT_EQ(fieldOf(validateFailPayload, Json{{"message", "x"}, {"code", 1}}), "payload.code");
  EXPECT_EQ(fieldOf(validateFailPayload, Json("boom")), "payload");
}

TEST(ExecPayload, AcceptsAFullPayload) {
  Json p = {{"argv", {"ls", "-l"}}, {"env", {{"A", "1"}}}, {"cwd", "/"}, {"stdin", "x"}};
  EXPECT_FALSE(validateExecPayload(p));
  auto r = parseExecPayload(p);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->argv, (std::vector<std::string>{"ls", "-l"}));
  EXPECT_EQ(r->env.at("A"), "1");
  EXPECT_EQ(r->cwd, "/");
  EXPECT_EQ(r->stdin_data, "x");
}

TEST(ExecPayload, NamesTheFieldAtFault) {
  struct Case {
    Json payload;
    std::string field;
  };
  const std::vector<Case> cases = {
      {Json::array(), "payload"},
      {Json("echo hi"), "payload"},
      {Json::object(), "payload.argv"},
      {Json{{"argv", "echo hi"}}, "payload.argv"},
      {Json{{"argv", Json::array()}}, "payload.argv"},
      {Json{{"argv", {"ls", 1}}}, "payload.argv[1]"},
      {Json{{"argv", {""}}}, "payload.argv[0]"},
      {Json{{"argv", {std::string("a\0b", 3)}}}, "payload.argv[0]"},
      {Json{{"argv", {"ls"}}, {"env", "A=1"}}, "payload.env"},
      {Json{{"argv", {"ls"}}, {"env", {{"A", 1}}}}, "payload.env.A"},
      {Json{{"argv", {"ls"}}, {"env", {{"A=B", "1"}}}}, "payload.env"},
      {Json{{"argv", {"ls"}}, {"env", {{"", "1"}}}}, "payload.env"},
      {Json{{"argv", {"ls"}}, {"env", {{"A", std::string("a\0b", 3)}}}}, "payload.env.A"},
      {Json{{"argv", {"ls"}}, {"cwd", 5}}, "payload.cwd"},
      {Json{{"argv", {"ls"}}, {"cwd", std::string("/\0", 2)}}, "payload.cwd"},
      {Json{{"argv", {"ls"}}, {"stdin", {1}}}, "payload.stdin"},
      {Json{{"argv", {"ls"}}, {"timeout", 1}}, "payload.timeout"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(fieldOf(validateExecPayload, c.payload), c.field) << c.payload.dump();
  }
  auto e = validateExecPayload(Json{{"argv", "echo hi"}});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->detail, "must be a non-empty array of strings");
}

TEST(ExecPayload, LongNamesAreCutInTheField) {
  std::string name(1000, 'n');
  auto e = validateExecPayload(Json{{"argv", {"ls"}}, {name, 1}});
  ASSERT_TRUE(e);
  EXPECT_LT(e->field.size(), 100u);
}

TEST(ExecPayload, NetworkAndResources) {
  auto r = parseExecPayload(Json{{"argv", {"true"}},
                                 {"network", true},
                                 {"resources", {{"memory_mb", 64}, {"cpus", 0.5}, {"pids", 32}}}});
  ASSERT_TRUE(r.has_value()) << r.error().field;
  EXPECT_TRUE(r->network);
  EXPECT_EQ(r->resources.memory_mb, 64);
  EXPECT_EQ(r->resources.cpus, 0.5);
  EXPECT_EQ(r->resources.pids, 32);
  auto plain = parseExecPayload(Json{{"argv", {"true"}}});
  ASSERT_TRUE(plain.has_value());
  EXPECT_FALSE(plain->network);  // no network unless asked
  EXPECT_EQ(plain->resources.memory_mb, 0);

  const std::vector<std::pair<Json, std::string>> bad = {
      {Json{{"network", "yes"}}, "payload.network"},
      {Json{{"resources", 64}}, "payload.resources"},
      {Json{{"resources", {{"memory_mb", 3}}}}, "payload.resources.memory_mb"},
      {Json{{"resources", {{"memory_mb", 64.5}}}}, "payload.resources.memory_mb"},
      {Json{{"resources", {{"memory_mb", kMaxMemoryMb + 1}}}}, "payload.resources.memory_mb"},
      {Json{{"resources", {{"memory_mb", "64m"}}}}, "payload.resources.memory_mb"},
      {Json{{"resources", {{"cpus", 0}}}}, "payload.resources.cpus"},
      {Json{{"resources", {{"cpus", 1025}}}}, "payload.resources.cpus"},
      {Json{{"resources", {{"pids", 0}}}}, "payload.resources.pids"},
      {Json{{"resources", {{"pids", -1}}}}, "payload.resources.pids"},
      {Json{{"resources", {{"disk_mb", 1}}}}, "payload.resources.disk_mb"},
  };
  for (auto [extra, field] : bad) {
    Json p = extra;
    p["argv"] = {"true"};
    EXPECT_EQ(fieldOf(validateExecPayload, p), field) << p.dump();
  }
}

TEST(ContainerPayload, AcceptsAFullPayload) {
  auto r = parseContainerPayload(Json{{"image", "localhost/busybox:1"},
                                      {"argv", {"/bin/sh", "-c", "echo hi"}},
                                      {"env", {{"A", "1"}}},
                                      {"network", false},
                                      {"resources", {{"memory_mb", 64}}}});
  ASSERT_TRUE(r.has_value()) << r.error().field << ": " << r.error().detail;
  EXPECT_EQ(r->image, "localhost/busybox:1");
  EXPECT_EQ(r->argv.size(), 3u);
  EXPECT_EQ(r->env.at("A"), "1");
  EXPECT_EQ(r->resources.memory_mb, 64);
  auto minimal = parseContainerPayload(Json{{"image", "debian:12"}});
  ASSERT_TRUE(minimal.has_value());
  EXPECT_TRUE(minimal->argv.empty());  // the image's own command
  EXPECT_FALSE(minimal->network);
}

TEST(ContainerPayload, NamesTheFieldAtFault) {
  const std::vector<std::pair<Json, std::string>> cases = {
      {Json("debian"), "payload"},
      {Json::object(), "payload.image"},
      {Json{{"image", ""}}, "payload.image"},
      {Json{{"image", 5}}, "payload.image"},
      {Json{{"image", "--privileged"}}, "payload.image"},  // never read as an engine option
      {Json{{"image", "a b"}}, "payload.image"},
      {Json{{"image", "a\nb"}}, "payload.image"},
      {Json{{"image", std::string(513, 'a')}}, "payload.image"},
      {Json{{"image", "x"}, {"argv", "ls"}}, "payload.argv"},
      {Json{{"image", "x"}, {"argv", {1}}}, "payload.argv[0]"},
      {Json{{"image", "x"}, {"env", {{"A", 1}}}}, "payload.env.A"},
      {Json{{"image", "x"}, {"network", 1}}, "payload.network"},
      {Json{{"image", "x"}, {"resources", {{"pids", 0}}}}, "payload.resources.pids"},
      {Json{{"image", "x"}, {"privileged", true}}, "payload.privileged"},
  };
  for (const auto& [payload, field] : cases) {
    EXPECT_EQ(fieldOf(validateContainerPayload, payload), field) << payload.dump();
  }
  ASSERT_TRUE(builtinPayloadValidator("container"));
}

TEST(BuiltinValidators, ByType) {
  EXPECT_FALSE(builtinPayloadValidator("noop"));
  EXPECT_FALSE(builtinPayloadValidator("echo"));
  EXPECT_FALSE(builtinPayloadValidator("custom"));
  ASSERT_TRUE(builtinPayloadValidator("sleep"));
  ASSERT_TRUE(builtinPayloadValidator("fail"));
  ASSERT_TRUE(builtinPayloadValidator("exec"));
  EXPECT_TRUE(builtinPayloadValidator("exec")(Json::object()));
  EXPECT_FALSE(builtinPayloadValidator("exec")(Json{{"argv", {"true"}}}));
}

}  // namespace
}  // namespace drover::tasks

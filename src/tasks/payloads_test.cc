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

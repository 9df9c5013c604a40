#include "worker/handler.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <thread>

namespace drover::worker {
namespace {

using namespace std::chrono_literals;

HandlerResult runType(const HandlerRegistry& registry, const std::string& type, Json payload) {
  TaskContext ctx;
  ctx.id = "t1";
  ctx.payload = std::move(payload);
  return invokeHandler(registry.find(type), ctx);
}

class BuiltinsTest : public ::testing::Test {
 protected:
  BuiltinsTest() { registerBuiltins(registry_); }
  HandlerRegistry registry_;
};

TEST(CancelTokenTest, FirstCancelWinsAndCopiesShareState) {
  CancelToken token;
  CancelToken copy = token;
  EXPECT_FALSE(token.cancelled());
  EXPECT_EQ(token.reason(), CancelReason::kNone);
  EXPECT_FALSE(token.cancel(CancelReason::kNone));
  EXPECT_TRUE(copy.cancel(CancelReason::kTimedOut));
  EXPECT_FALSE(token.cancel(CancelReason::kCancelled));
  EXPECT_TRUE(token.cancelled());
  EXPECT_EQ(token.reason(), CancelReason::kTimedOut);
  EXPECT_EQ(cancelReasonName(CancelReason::kShutdown), "shutdown");
}

TEST(CancelTokenTest, WaitForReturnsEarlyOnCancel) {
  CancelToken token;
  EXPECT_FALSE(token.waitFor(10ms));
  auto start = std::chrono::steady_clock::now();
  std::thread t([token] {
    std::this_thread::sleep_for(50ms);
    token.cancel(CancelReason::kCancelled);
  });
  EXPECT_TRUE(token.waitFor(30s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  t.join();
}

TEST(HandlerRegistryTest, AddFindHasReplace) {
  HandlerRegistry registry;
  EXPECT_FALSE(registry.has("x"));
  EXPECT_FALSE(registry.find("x"));
  registry.add("x", [](TaskContext&) { return HandlerResult::success(1); });
  EXPECT_TRUE(registry.has("x"));
  TaskContext ctx;
  EXPECT_EQ(invokeHandler(registry.find("x"), ctx).result, 1);
  registry.add("x", [](TaskContext&) { return HandlerResult::success(2); });
  EXPECT_EQ(invokeHandler(registry.find("x"), ctx).result, 2);
  EXPECT_EQ(registry.types(), std::vector<std::string>{"x"});
}

TEST(HandlerRegistryTest, ExceptionsAndEmptyHandlersBecomeFailures) {
  TaskContext ctx;
  auto r =
      invokeHandler([](TaskContext&) -> HandlerResult { throw std::runtime_error("boom"); }, ctx);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("boom"), std::string::npos);
  r = invokeHandler([](TaskContext&) -> HandlerResult { throw 42; }, ctx);
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.error.empty());
  r = invokeHandler(Handler(), ctx);
  EXPECT_FALSE(r.ok);
  r = invokeHandler([](TaskContext&) { return HandlerResult::failure(""); }, ctx);
  EXPECT_EQ(r.error, "failed");
}

TEST_F(BuiltinsTest, AllRegistered) {
  for (const char* type : {"noop", "echo", "sleep", "fail", "exec"}) {
    EXPECT_TRUE(registry_.has(type)) << type;
  }
}

TEST_F(BuiltinsTest, BuiltinsCarryTheirPayloadValidators) {
  EXPECT_FALSE(registry_.validate("noop", Json{{"x", 1}}));
  EXPECT_FALSE(registry_.validate("echo", Json("anything")));
  EXPECT_FALSE(registry_.validate("sleep", Json{{"ms", 10}}));
  EXPECT_FALSE(registry_.validate("exec", Json{{"argv", {"true"}}}));
  auto e = registry_.validate("exec", Json{{"argv", "echo hi"}});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->field, "payload.argv");
  e = registry_.validate("sleep", Json{{"ms", "soon"}});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->field, "payload.ms");
  e = registry_.validate("fail", Json{{"message", 3}});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->field, "payload.message");
  EXPECT_FALSE(registry_.validate("no-such-type", Json::object()));
}

TEST(HandlerRegistryTest, EmbeddersRegisterAValidatorWithTheirHandler) {
  HandlerRegistry registry;
  registry.add(
      "resize", [](TaskContext&) { return HandlerResult::success(); },
      [](const Json& payload) -> std::optional<tasks::ValidationError> {
        if (payload.is_object() && payload.contains("width")) return std::nullopt;
        return tasks::ValidationError{"payload.width", "is required"};
      });
  registry.add("plain", [](TaskContext&) { return HandlerResult::success(); });
  registry.add(
      "throws", [](TaskContext&) { return HandlerResult::success(); },
      [](const Json&) -> std::optional<tasks::ValidationError> {
        throw std::runtime_error("bad validator");
      });
  EXPECT_FALSE(registry.validate("resize", Json{{"width", 3}}));
  auto e = registry.validate("resize", Json::object());
  ASSERT_TRUE(e);
  EXPECT_EQ(e->field, "payload.width");
  EXPECT_FALSE(registry.validate("plain", Json("x")));
  e = registry.validate("throws", Json::object());
  ASSERT_TRUE(e);
  EXPECT_EQ(e->field, "payload");
  EXPECT_NE(e->detail.find("bad validator"), std::string::npos);
  // Replacing a handler replaces its validator.
  registry.add("resize", [](TaskContext&) { return HandlerResult::success(); });
  EXPECT_FALSE(registry.validate("resize", Json::object()));
}

TEST_F(BuiltinsTest, NoopAndEcho) {
  auto r = runType(registry_, "noop", Json{{"x", 1}});
  EXPECT_TRUE(r.ok);
  EXPECT_TRUE(r.result.is_null());
  Json payload = {{"a", 1}, {"b", {1, 2, "x"}}};
  r = runType(registry_, "echo", payload);
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.result, payload);
}

TEST_F(BuiltinsTest, Fail) {
  auto r = runType(registry_, "fail", Json{{"message", "bad thing"}});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "bad thing");
  r = runType(registry_, "fail", Json::object());
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "failed");
  r = runType(registry_, "fail", Json{{"message", 7}});
  EXPECT_EQ(r.error, "failed");
}

TEST_F(BuiltinsTest, SleepCompletes) {
  auto start = std::chrono::steady_clock::now();
  auto r = runType(registry_, "sleep", Json{{"ms", 30}});
  EXPECT_TRUE(r.ok);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  EXPECT_TRUE(runType(registry_, "sleep", Json::object()).ok);
}

TEST_F(BuiltinsTest, SleepRejectsBadPayload) {
  EXPECT_FALSE(runType(registry_, "sleep", Json{{"ms", "x"}}).ok);
  EXPECT_FALSE(runType(registry_, "sleep", Json{{"ms", -1}}).ok);
  EXPECT_FALSE(runType(registry_, "sleep", Json::array()).ok);
}

TEST_F(BuiltinsTest, SleepReturnsEarlyWhenCancelled) {
  TaskContext ctx;
  ctx.payload = {{"ms", 60000}};
  std::thread t([token = ctx.cancel] {
    std::this_thread::sleep_for(30ms);
    token.cancel(CancelReason::kCancelled);
  });
  auto start = std::chrono::steady_clock::now();
  auto r = invokeHandler(registry_.find("sleep"), ctx);
  t.join();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "cancelled");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

}  // namespace
}  // namespace drover::worker

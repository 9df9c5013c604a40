#include "coord/error.h"

#include <gtest/gtest.h>

#include <set>

#include "coord/contract_suite.h"

namespace drover::coord {
namespace {

constexpr Code kAllCodes[] = {
    Code::kOk,
    Code::kNoNode,
    Code::kNodeExists,
    Code::kBadVersion,
    Code::kNotEmpty,
    Code::kNoChildrenForEphemerals,
    Code::kConnectionLoss,
    Code::kOperationTimeout,
    Code::kSessionExpired,
    Code::kSessionMoved,
    Code::kNoAuth,
    Code::kAuthFailed,
    Code::kInvalidAcl,
    Code::kBadArguments,
    Code::kClosing,
    Code::kMarshallingError,
    Code::kRuntimeInconsistency,
    Code::kUnimplemented,
    Code::kSystemError,
};

TEST(ErrorTest, RetryableAndOutcomeUnknownAreConnectionLossAndTimeout) {
  for (Code code : kAllCodes) {
    SCOPED_TRACE(std::string(codeName(code)));
    bool transient = code == Code::kConnectionLoss || code == Code::kOperationTimeout;
    EXPECT_EQ(Error(code).retryable(), transient);
    EXPECT_EQ(Error(code).outcomeUnknown(), transient);
  }
}

TEST(ErrorTest, SessionLost) {
  for (Code code : kAllCodes) {
    SCOPED_TRACE(std::string(codeName(code)));
    EXPECT_EQ(Error(code).sessionLost(),
              code == Code::kSessionExpired || code == Code::kAuthFailed);
  }
}

TEST(ErrorTest, EveryCodeHasItsOwnName) {
  std::set<std::string_view> names;
  for (Code code : kAllCodes) {
    EXPECT_NE(codeName(code), "unknown");
    EXPECT_FALSE(codeName(code).empty());
    names.insert(codeName(code));
  }
  EXPECT_EQ(names.size(), std::size(kAllCodes));
}

TEST(ErrorTest, ToStringHasCodeAndDetail) {
  EXPECT_EQ(Error(Code::kNoNode, "/a/b").toString(), "no node: /a/b");
  EXPECT_EQ(Error(Code::kBadVersion).toString(), "bad version");
}

TEST(ErrorTest, FailedOp) {
  EXPECT_EQ(Error(Code::kConnectionLoss).failedOp(), -1);
  EXPECT_EQ(Error(Code::kBadVersion, "check", 3).failedOp(), 3);
  EXPECT_EQ(Error(Code::kBadVersion, "check", 3).detail(), "check");
}

TEST(ErrorTest, DefaultIsSystemError) {
  EXPECT_EQ(Error().code(), Code::kSystemError);
  EXPECT_EQ(Error().failedOp(), -1);
}

TEST(ErrorTest, EqualityComparesCodesOnly) {
  EXPECT_EQ(Error(Code::kNoNode, "a"), Error(Code::kNoNode, "b"));
  EXPECT_FALSE(Error(Code::kNoNode) == Error(Code::kNodeExists));
}

TEST(ErrorTest, FailBuildsAnUnexpected) {
  Result<int> result = fail(Code::kNotEmpty, "/p");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), Code::kNotEmpty);
  EXPECT_EQ(result.error().detail(), "/p");
  EXPECT_EQ(result.error().failedOp(), -1);
}

}  // namespace
}  // namespace drover::coord

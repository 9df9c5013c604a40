#include "base/ids.h"

#include <gtest/gtest.h>

#include <set>

#include "base/log.h"

namespace drover::base {
namespace {

TEST(RandomHex, HasTheAskedLengthAndDoesNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = randomHex();
    ASSERT_EQ(id.size(), 32u);
    ASSERT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(randomHex(3).size(), 6u);
}

TEST(IsValidName, FollowsTheIdRule) {
  EXPECT_TRUE(isValidName("a"));
  EXPECT_TRUE(isValidName("A-z_0.9"));
  EXPECT_TRUE(isValidName(std::string(128, 'x')));
  EXPECT_FALSE(isValidName(std::string(129, 'x')));
  EXPECT_FALSE(isValidName(""));
  EXPECT_FALSE(isValidName("."));
  EXPECT_FALSE(isValidName(".."));
  EXPECT_TRUE(isValidName("..."));
  EXPECT_FALSE(isValidName("a/b"));
  EXPECT_FALSE(isValidName(std::string("a\0b", 3)));
  EXPECT_FALSE(isValidName("a b"));
  EXPECT_FALSE(isValidName("é"));
}

TEST(Logging, AcceptsKnownLevelsAndFormatsOnly) {
  EXPECT_TRUE(initLogging("info", "text"));
  EXPECT_TRUE(initLogging("debug", "json"));
  EXPECT_FALSE(initLogging("loud", "text"));
  EXPECT_FALSE(initLogging("info", "xml"));
  EXPECT_TRUE(initLogging("warn"));
}

}  // namespace
}  // namespace drover::base

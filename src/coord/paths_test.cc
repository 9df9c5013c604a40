#include "coord/paths.h"

#include <gtest/gtest.h>

#include <memory>

#include "coord/contract_suite.h"
#include "coord/fake/fake_coordination.h"

namespace drover::coord {
namespace {

TEST(PathsTest, Join) {
  EXPECT_EQ(join("/a/b", "c"), "/a/b/c");
  EXPECT_EQ(join("/", "c"), "/c");
  EXPECT_EQ(join("/a/", "c"), "/a/c");
}

TEST(PathsTest, ParentOf) {
  EXPECT_EQ(parentOf("/a/b/c"), "/a/b");
  EXPECT_EQ(parentOf("/a"), "/");
  EXPECT_EQ(parentOf("/"), "/");
}

TEST(PathsTest, BaseName) {
  EXPECT_EQ(baseName("/a/b/c"), "c");
  EXPECT_EQ(baseName("/a"), "a");
  EXPECT_EQ(baseName("/"), "");
}

TEST(PathsTest, ValidPaths) {
  EXPECT_TRUE(isValidPath("/"));
  EXPECT_TRUE(isValidPath("/a"));
  EXPECT_TRUE(isValidPath("/a/b-c.d_e"));
  EXPECT_TRUE(isValidPath("/a/..b"));  // only a whole ".." component is special
  EXPECT_TRUE(isValidPath("/a/.hidden"));
}

TEST(PathsTest, InvalidPaths) {
  EXPECT_FALSE(isValidPath(""));
  EXPECT_FALSE(isValidPath("a/b"));
  EXPECT_FALSE(isValidPath("/a/"));
  EXPECT_FALSE(isValidPath("//"));
  EXPECT_FALSE(isValidPath("/a//b"));
  EXPECT_FALSE(isValidPath("/a/./b"));
  EXPECT_FALSE(isValidPath("/a/../b"));
  EXPECT_FALSE(isValidPath("/.."));
  EXPECT_FALSE(isValidPath("/."));
  EXPECT_FALSE(isValidPath(std::string_view("/a\0b", 4)));
  EXPECT_FALSE(isValidPath("/a\x01"));
  EXPECT_FALSE(isValidPath("/a\x7f"));
}

TEST(PathsTest, SequenceOf) {
  EXPECT_EQ(sequenceOf("lock-0000000042"), 42);
  EXPECT_EQ(sequenceOf("0000000000"), 0);
  EXPECT_EQ(sequenceOf("2147483647"), 2147483647);
  EXPECT_EQ(sequenceOf("lock-"), -1);
  EXPECT_EQ(sequenceOf("lock-000000042"), -1);  // 9 digits after a non-digit
  EXPECT_EQ(sequenceOf("lock-00000x0042"), -1);
  EXPECT_EQ(sequenceOf(""), -1);
}

TEST(PathsTest, EnsurePathCreatesMissingAncestors) {
  auto server = std::make_shared<FakeServer>();
  FakeCoordination coord(server);
  ASSERT_TRUE(ensurePath(coord, "/a/b/c").has_value());
  EXPECT_TRUE(server->peek("/a").has_value());
  EXPECT_TRUE(server->peek("/a/b/c").has_value());
  // Idempotent, and fine for the root.
  EXPECT_TRUE(ensurePath(coord, "/a/b/c").has_value());
  EXPECT_TRUE(ensurePath(coord, "/").has_value());
}

TEST(PathsTest, EnsurePathReportsErrors) {
  auto server = std::make_shared<FakeServer>();
  FakeCoordination coord(server);
  coord.disconnect();
  auto status = ensurePath(coord, "/a/b");
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code(), Code::kConnectionLoss);

  coord.reconnect();
  ASSERT_EQ(contract::codeOf(coord.create(CreateOp{"/e", "", CreateMode::kEphemeral, {}})),
            Code::kOk);
  status = ensurePath(coord, "/e/x");
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code(), Code::kNoChildrenForEphemerals);
}

}  // namespace
}  // namespace drover::coord

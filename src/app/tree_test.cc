// The tree a node starts on: the protocol marker, and the refusal of a tree of the other
// protocol (which must leave the tree exactly as it was).

#include "app/tree.h"

#include <gtest/gtest.h>

#include <memory>

#include "coord/fake/fake_coordination.h"
#include "coord/paths.h"

namespace drover::app {
namespace {

using coord::FakeCoordination;
using coord::FakeServer;

class TreeTest : public ::testing::Test {
 protected:
  bool exists(const std::string& path) {
    auto st = c_.exists(path, nullptr).get();
    EXPECT_TRUE(st.has_value());
    return st && st->has_value();
  }

  std::shared_ptr<FakeServer> server_ = std::make_shared<FakeServer>();
  FakeCoordination c_{server_};
  tasks::Layout layout_{"/drover"};
};

TEST_F(TreeTest, ANewTreeGetsTheMarkerAndItsDirectories) {
  auto r = prepareTree(c_, layout_);
  ASSERT_TRUE(r.has_value()) << r.error().toString();
  EXPECT_EQ(*r, "");
  auto marker = c_.get(layout_.protocol(), nullptr).get();
  ASSERT_TRUE(marker.has_value());
  EXPECT_EQ(marker->data, "2");
  for (const auto& dir : layout_.directories()) EXPECT_TRUE(exists(dir)) << dir;
  EXPECT_TRUE(exists(layout_.epoch()));
  EXPECT_FALSE(exists(layout_.jobs()));
  // A second node (or a restart) on the same tree may run.
  auto again = prepareTree(c_, layout_);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, "");
}

TEST_F(TreeTest, ATreeOfTheRemovedFirstProtocolIsRefusedAndNothingWritten) {
  // The directories protocol 1 wrote (it wrote no marker): /jobs and /status with a bucket each.
  for (const std::string& dir :
       {layout_.workers(), layout_.election(), layout_.jobs() + "/00", layout_.assignments(),
        layout_.statuses() + "/00", layout_.events()}) {
    ASSERT_TRUE(coord::ensurePath(c_, dir));
  }
  ASSERT_TRUE(exists(layout_.jobs()));
  auto r = prepareTree(c_, layout_);
  ASSERT_TRUE(r.has_value()) << r.error().toString();
  EXPECT_NE(r->find("protocol 1"), std::string::npos) << *r;
  EXPECT_NE(r->find("fresh --zk-root"), std::string::npos) << *r;
  EXPECT_FALSE(exists(layout_.protocol()));
  EXPECT_FALSE(exists(layout_.batches()));
  EXPECT_FALSE(exists(layout_.pendingRoot()));
}

TEST_F(TreeTest, AMarkerOfAnUnknownProtocolIsRefused) {
  ASSERT_TRUE(c_.create({"/drover", "", coord::CreateMode::kPersistent, {}}).get().has_value());
  ASSERT_TRUE(
      c_.create({layout_.protocol(), "7", coord::CreateMode::kPersistent, {}}).get().has_value());
  auto r = prepareTree(c_, layout_);
  ASSERT_TRUE(r.has_value());
  EXPECT_NE(r->find("protocol 7"), std::string::npos) << *r;
  EXPECT_FALSE(exists(layout_.batches()));
}

TEST_F(TreeTest, ACoordinationFailureIsAnErrorToRetryNotARefusal) {
  c_.failNext(coord::OpKind::kGet, coord::Code::kConnectionLoss);
  auto r = prepareTree(c_, layout_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), coord::Code::kConnectionLoss);
  EXPECT_FALSE(exists(layout_.protocol()));
}

}  // namespace
}  // namespace drover::app

#include "tasks/layout.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <set>

namespace drover::tasks {
namespace {

TEST(Layout, BuildsThePathsOfTheContract) {
  Layout l("/drover/");
  EXPECT_EQ(l.root(), "/drover");
  EXPECT_EQ(l.worker("w1"), "/drover/workers/w1");
  EXPECT_EQ(l.epoch(), "/drover/epoch");
  // Client-chosen ids are bucketed by a hash of the id (docs/ZNODES.md).
  EXPECT_EQ(l.idEntry("t1"), fmt::format("/drover/ids/{:02x}/t1", Layout::bucketIndex("t1")));
  EXPECT_EQ(l.idsBucketAt(0xd6), "/drover/ids/d6");
  EXPECT_EQ(l.chunk("w1", "c1"), "/drover/assignments/w1/c1");
  EXPECT_EQ(l.assignmentsOf("w1"), "/drover/assignments/w1");
  // A batch and its pending state live in the time bucket of the batch name's first 7 digits.
  EXPECT_EQ(l.batch("0123456789abcdef"), "/drover/batches/0123456/0123456789abcdef");
  EXPECT_EQ(l.pending("0123456789abcdef"), "/drover/pending/0123456/0123456789abcdef");
}

TEST(Layout, BucketsAreStableAndSpread) {
  EXPECT_EQ(Layout::bucketIndex("abc"), Layout::bucketIndex("abc"));
  std::set<int> used;
  for (int i = 0; i < 5000; ++i) used.insert(Layout::bucketIndex("task-" + std::to_string(i)));
  EXPECT_EQ(used.size(), static_cast<size_t>(Layout::kIdBuckets));
  Layout l;
  // The fixed directories and the id buckets.
  EXPECT_EQ(l.directories().size(), 10u + Layout::kIdBuckets);
}

}  // namespace
}  // namespace drover::tasks

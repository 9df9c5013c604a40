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
  // Statuses are bucketed like jobs (docs/ZNODES.md, "Directory bounds").
  EXPECT_EQ(l.status("t1"), fmt::format("/drover/status/{:02x}/t1", Layout::bucketIndex("t1")));
  EXPECT_EQ(l.statusBucketAt(0xd6), "/drover/status/d6");
  EXPECT_EQ(l.assignment("w1", "t1"), "/drover/assignments/w1/t1");
  EXPECT_EQ(l.job("t1"), l.jobBucket("t1") + "/t1");
  EXPECT_EQ(l.jobBucket("t1").rfind("/drover/jobs/", 0), 0u);
}

TEST(Layout, BucketsAreStableAndSpread) {
  EXPECT_EQ(Layout::bucketIndex("abc"), Layout::bucketIndex("abc"));
  std::set<int> used;
  for (int i = 0; i < 5000; ++i) used.insert(Layout::bucketIndex("task-" + std::to_string(i)));
  EXPECT_EQ(used.size(), static_cast<size_t>(Layout::kJobBuckets));
  Layout l;
  // The fixed directories, the job buckets and the status buckets.
  EXPECT_EQ(l.directories().size(), 9u + 2 * Layout::kJobBuckets);
}

}  // namespace
}  // namespace drover::tasks

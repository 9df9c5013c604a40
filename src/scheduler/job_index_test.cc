#include "scheduler/job_index.h"

#include <gtest/gtest.h>

#include <vector>

namespace drover::scheduler {
namespace {

JobIndex::Entry entry(const std::string& id, int priority, int64_t czxid, int64_t not_before = 0) {
  JobIndex::Entry e;
  e.job.spec.id = id;
  e.job.spec.priority = priority;
  e.job.not_before = not_before;
  e.czxid = czxid;
  return e;
}

std::vector<std::string> drain(JobIndex& index) {
  std::vector<std::string> out;
  while (index.ready() > 0) out.push_back(index.take(index.next().job.spec.id).job.spec.id);
  return out;
}

TEST(JobIndex, ReadyJobsGoHigherPriorityFirstThenOldestFirst) {
  JobIndex index;
  index.add(entry("low-old", 1, 10), 0);
  index.add(entry("high-new", 9, 40), 0);
  index.add(entry("high-old", 9, 20), 0);
  index.add(entry("mid", 5, 5), 0);
  EXPECT_EQ(index.readyByPriority().at(9), 2u);
  EXPECT_EQ(drain(index), (std::vector<std::string>{"high-old", "high-new", "mid", "low-old"}));
  EXPECT_EQ(index.size(), 0u);
  EXPECT_TRUE(index.readyByPriority().empty());
}

TEST(JobIndex, DelayedJobsWaitUntilDueAndThenTakeTheirPlace) {
  JobIndex index;
  index.add(entry("later", 9, 1, 1'000), 500);
  index.add(entry("now", 1, 2), 500);
  EXPECT_EQ(index.ready(), 1u);
  EXPECT_EQ(index.delayed(), 1u);
  EXPECT_EQ(index.nextDue(), 1'000);
  EXPECT_EQ(index.promote(999), 0u);
  EXPECT_EQ(index.promote(1'000), 1u);
  EXPECT_FALSE(index.nextDue());
  EXPECT_EQ(drain(index), (std::vector<std::string>{"later", "now"}));
}

TEST(JobIndex, ReAddingAnIdReplacesItsEntryAndDropForgetsIt) {
  JobIndex index;
  index.add(entry("a", 1, 1), 0);
  index.add(entry("a", 9, 1, 50), 0);  // rewritten: now delayed
  EXPECT_EQ(index.size(), 1u);
  EXPECT_EQ(index.ready(), 0u);
  EXPECT_EQ(index.delayed(), 1u);
  EXPECT_TRUE(index.readyByPriority().empty());
  index.drop("a");
  index.drop("never-there");
  EXPECT_FALSE(index.contains("a"));
  EXPECT_FALSE(index.nextDue());
}

}  // namespace
}  // namespace drover::scheduler

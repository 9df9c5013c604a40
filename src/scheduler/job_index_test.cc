#include "scheduler/job_index.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace drover::scheduler {
namespace {

// A batch record whose tasks are named by `ids`, with the given priorities.
std::shared_ptr<const tasks::BatchRecord> record(const std::vector<std::string>& ids,
                                                 const std::vector<int>& priorities) {
  auto r = std::make_shared<tasks::BatchRecord>();
  r->name = "1a22ee6b0000f3a1";
  for (size_t i = 0; i < ids.size(); ++i) {
    tasks::TaskSpec spec;
    spec.id = ids[i];
    spec.type = "noop";
    spec.priority = priorities[i];
    r->tasks.push_back(std::move(spec));
  }
  return r;
}

JobIndex::Entry entry(const std::shared_ptr<const tasks::BatchRecord>& r, uint32_t index,
                      int64_t order, int64_t not_before = 0) {
  return JobIndex::Entry{r, index, 1, not_before, order, ""};
}

std::vector<std::string> drain(JobIndex& index) {
  std::vector<std::string> out;
  while (index.ready() > 0) out.push_back(index.take(index.next().key()).spec().id);
  return out;
}

TEST(JobIndex, ReadyJobsGoHigherPriorityFirstThenOldestFirst) {
  auto r = record({"low-old", "high-new", "high-old", "mid"}, {1, 9, 9, 5});
  JobIndex index;
  index.add(entry(r, 0, 10), 0);
  index.add(entry(r, 1, 40), 0);
  index.add(entry(r, 2, 20), 0);
  index.add(entry(r, 3, 5), 0);
  EXPECT_EQ(index.readyByPriority().at(9), 2u);
  EXPECT_EQ(drain(index), (std::vector<std::string>{"high-old", "high-new", "mid", "low-old"}));
  EXPECT_EQ(index.size(), 0u);
  EXPECT_TRUE(index.readyByPriority().empty());
}

TEST(JobIndex, DelayedJobsWaitUntilDueAndThenTakeTheirPlace) {
  auto r = record({"later", "now"}, {9, 1});
  JobIndex index;
  index.add(entry(r, 0, 1, 1'000), 500);
  index.add(entry(r, 1, 2), 500);
  EXPECT_EQ(index.ready(), 1u);
  EXPECT_EQ(index.delayed(), 1u);
  EXPECT_EQ(index.nextDue(), 1'000);
  EXPECT_EQ(index.promote(999), 0u);
  EXPECT_EQ(index.promote(1'000), 1u);
  EXPECT_FALSE(index.nextDue());
  EXPECT_EQ(drain(index), (std::vector<std::string>{"later", "now"}));
}

TEST(JobIndex, ReAddingATaskReplacesItsEntryAndDropForgetsIt) {
  auto r = record({"a", "b"}, {1, 1});
  JobIndex index;
  index.add(entry(r, 0, 1), 0);
  index.add(entry(r, 0, 1, 50), 0);  // rewritten: now delayed
  EXPECT_EQ(index.size(), 1u);
  EXPECT_EQ(index.ready(), 0u);
  EXPECT_EQ(index.delayed(), 1u);
  EXPECT_TRUE(index.readyByPriority().empty());
  index.drop(JobIndex::keyOf(r.get(), 0));
  index.drop(JobIndex::keyOf(r.get(), 1));  // never there
  EXPECT_FALSE(index.contains(JobIndex::keyOf(r.get(), 0)));
  EXPECT_FALSE(index.nextDue());
}

// The same index in two batch records are two tasks; an entry keeps its record alive after the
// tracker let go of it, so a key never names a freed record.
TEST(JobIndex, EntriesAreKeyedByRecordAndIndexAndShareTheRecord) {
  auto first = record({"x"}, {5});
  auto second = record({"y"}, {5});
  JobIndex index;
  index.add(entry(first, 0, 1), 0);
  index.add(entry(second, 0, 2), 0);
  EXPECT_EQ(index.size(), 2u);
  const auto key = JobIndex::keyOf(first.get(), 0);
  std::weak_ptr<const tasks::BatchRecord> held = first;
  first.reset();
  ASSERT_FALSE(held.expired());
  EXPECT_EQ(index.next().spec().id, "x");
  index.take(key);
  EXPECT_TRUE(held.expired());
  EXPECT_EQ(drain(index), (std::vector<std::string>{"y"}));
}

}  // namespace
}  // namespace drover::scheduler

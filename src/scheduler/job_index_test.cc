#include "scheduler/job_index.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace drover::scheduler {
namespace {

// A batch record whose tasks are named by `ids`, with the given priorities.
tasks::BatchRecord batch(const std::vector<std::string>& ids, const std::vector<int>& priorities) {
  tasks::BatchRecord r;
  r.name = "1a22ee6b0000f3a1";
  for (size_t i = 0; i < ids.size(); ++i) {
    tasks::TaskSpec spec;
    spec.id = ids[i];
    spec.type = "noop";
    spec.priority = priorities[i];
    r.tasks.push_back(std::move(spec));
  }
  return r;
}

// The record as the leader holds it.
std::shared_ptr<const PackedRecord> packed(const tasks::BatchRecord& r) {
  return std::make_shared<const PackedRecord>(PackedRecord::pack(r));
}

std::shared_ptr<const PackedRecord> record(const std::vector<std::string>& ids,
                                           const std::vector<int>& priorities) {
  return packed(batch(ids, priorities));
}

JobIndex::Entry entry(const std::shared_ptr<const PackedRecord>& r, uint32_t index, int64_t order,
                      int64_t not_before = 0) {
  return JobIndex::Entry{r, index, 1, not_before, order, ""};
}

std::vector<std::string> drain(JobIndex& index) {
  std::vector<std::string> out;
  while (index.ready() > 0) out.push_back(index.take(index.next().key()).id());
  return out;
}

TEST(JobIndex, ReadyJobsGoHigherPriorityFirstThenOldestBatchFirstThenByIndex) {
  auto old_batch = record({"low-old", "high-old"}, {1, 9});
  auto new_batch = record({"high-new"}, {9});
  auto oldest = record({"mid"}, {5});
  JobIndex index;
  index.add(entry(new_batch, 0, 40), 0);
  index.add(entry(old_batch, 1, 10), 0);
  index.add(entry(old_batch, 0, 10), 0);
  index.add(entry(oldest, 0, 5), 0);
  EXPECT_EQ(index.readyByPriority().at(9), 2u);
  EXPECT_EQ(drain(index), (std::vector<std::string>{"high-old", "high-new", "mid", "low-old"}));
  EXPECT_EQ(index.size(), 0u);
  EXPECT_TRUE(index.readyByPriority().empty());
}

// One record's ready tasks are kept as bitmaps per priority and route: the order is still by
// index across routes and across words, and a task put back (a failed multi) takes its place
// again.
TEST(JobIndex, ARecordsTasksKeepIndexOrderAcrossRoutesAndWhenPutBack) {
  std::vector<std::string> ids;
  for (int i = 0; i < 200; ++i) ids.push_back("t" + std::to_string(i));
  tasks::BatchRecord b = batch(ids, std::vector<int>(200, 5));
  for (size_t i = 0; i < b.tasks.size(); i += 2) b.tasks[i].queue = "etl";
  auto r = packed(b);
  JobIndex index;
  for (uint32_t i = 200; i-- > 0;) index.add(entry(r, i, 7), 0);
  EXPECT_EQ(index.ready(), 200u);
  EXPECT_EQ(index.readyByRoute().size(), 2u);
  index.drop(JobIndex::keyOf(r.get(), 1));
  index.drop(JobIndex::keyOf(r.get(), 130));
  EXPECT_FALSE(index.contains(JobIndex::keyOf(r.get(), 130)));
  EXPECT_TRUE(index.contains(JobIndex::keyOf(r.get(), 131)));
  std::vector<std::string> first;
  for (int i = 0; i < 3; ++i) first.push_back(index.take(index.next().key()).id());
  EXPECT_EQ(first, (std::vector<std::string>{"t0", "t2", "t3"}));
  index.add(entry(r, 2, 7), 0);  // put back
  std::vector<std::string> rest = drain(index);
  ASSERT_EQ(rest.size(), 196u);
  EXPECT_EQ(rest[0], "t2");
  EXPECT_EQ(rest[1], "t4");
  std::vector<std::string> expected;
  for (int i = 4; i < 200; ++i) {
    if (i != 130) expected.push_back("t" + std::to_string(i));
  }
  EXPECT_EQ(std::vector<std::string>(rest.begin() + 1, rest.end()), expected);
  EXPECT_EQ(index.size(), 0u);
  EXPECT_TRUE(index.readyByRoute().empty());
}

// A retry's attempt and previous error are kept beside the bitmap and come back with the entry.
TEST(JobIndex, ARetrysAttemptAndErrorComeBackWithItsEntry) {
  auto r = record({"first", "retried"}, {5, 5});
  JobIndex index;
  index.add(entry(r, 0, 1), 0);
  index.add(JobIndex::Entry{r, 1, 3, 0, 1, "boom"}, 0);
  JobIndex::Entry head = index.take(index.next().key());
  EXPECT_EQ(head.id(), "first");
  EXPECT_EQ(head.attempt, 1);
  EXPECT_EQ(head.error, "");
  EXPECT_EQ(index.next().attempt, 3);
  JobIndex::Entry retried = index.take(JobIndex::keyOf(r.get(), 1));
  EXPECT_EQ(retried.attempt, 3);
  EXPECT_EQ(retried.error, "boom");
  index.add(entry(r, 1, 1), 0);  // a first attempt again: nothing left of the retry
  EXPECT_EQ(index.next().attempt, 1);
  EXPECT_EQ(index.next().error, "");
}

TEST(JobIndex, DelayedJobsWaitUntilDueAndThenTakeTheirPlace) {
  auto r = record({"later", "now"}, {9, 1});
  JobIndex index;
  index.add(entry(r, 0, 1, 1'000), 500);
  index.add(entry(r, 1, 1), 500);
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
  std::weak_ptr<const PackedRecord> held = first;
  first.reset();
  ASSERT_FALSE(held.expired());
  EXPECT_EQ(index.next().id(), "x");
  index.take(key);
  EXPECT_TRUE(held.expired());
  EXPECT_EQ(drain(index), (std::vector<std::string>{"y"}));
}

}  // namespace
}  // namespace drover::scheduler

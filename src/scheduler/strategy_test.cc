#include "scheduler/strategy.h"

#include <gtest/gtest.h>

#include <map>

namespace drover::scheduler {
namespace {

Route route() { return Route{"default", {}, "noop"}; }

std::vector<WorkerLoad> threeWorkers(int slots) {
  return {{"a", slots, 0, {}}, {"b", slots, 0, {}}, {"c", slots, 0, {}}};
}

// Picks `n` times, counting each pick into the load the way the scheduler does.
std::map<std::string, int> pickMany(WorkerPicker& picker, std::vector<WorkerLoad>& workers, int n) {
  std::map<std::string, int> picks;
  for (int k = 0; k < n; ++k) {
    auto i = picker.pick(workers, route());
    if (!i) break;
    EXPECT_GT(workers[*i].freeSlots(), 0);
    ++workers[*i].assigned;
    ++picks[workers[*i].id];
  }
  return picks;
}

TEST(RoundRobinPickerTest, CyclesEvenlyInIdOrder) {
  RoundRobinPicker picker;
  auto workers = threeWorkers(100);
  std::vector<std::string> order;
  for (int k = 0; k < 6; ++k) {
    auto i = picker.pick(workers, route());
    ASSERT_TRUE(i);
    order.push_back(workers[*i].id);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "c", "a", "b", "c"}));
  auto picks = pickMany(picker, workers, 300);
  EXPECT_EQ(picks["a"], 100);
  EXPECT_EQ(picks["b"], 100);
  EXPECT_EQ(picks["c"], 100);
}

TEST(RoundRobinPickerTest, SkipsFullWorkersAndNeverOverfills) {
  RoundRobinPicker picker;
  std::vector<WorkerLoad> workers{{"a", 1, 0, {}}, {"b", 2, 2, {}}, {"c", 3, 0, {}}};
  auto picks = pickMany(picker, workers, 100);
  EXPECT_EQ(picks["a"], 1);
  EXPECT_EQ(picks["b"], 0);
  EXPECT_EQ(picks["c"], 3);
  EXPECT_FALSE(picker.pick(workers, route()));
}

TEST(RoundRobinPickerTest, SurvivesMembershipChanges) {
  RoundRobinPicker picker;
  auto workers = threeWorkers(10);
  ASSERT_EQ(*picker.pick(workers, route()), 0u);  // a
  ASSERT_EQ(*picker.pick(workers, route()), 1u);  // b
  // b leaves: the next after "b" in id order is c.
  std::vector<WorkerLoad> fewer{{"a", 10, 0, {}}, {"c", 10, 0, {}}};
  auto i = picker.pick(fewer, route());
  ASSERT_TRUE(i);
  EXPECT_EQ(fewer[*i].id, "c");
  i = picker.pick(fewer, route());
  ASSERT_TRUE(i);
  EXPECT_EQ(fewer[*i].id, "a");
}

TEST(RoundRobinPickerTest, NoWorkers) {
  RoundRobinPicker picker;
  EXPECT_FALSE(picker.pick({}, route()));
}

TEST(RandomPickerTest, OnlyPicksWorkersWithFreeSlots) {
  RandomPicker picker(42);
  std::vector<WorkerLoad> workers{{"a", 2, 2, {}}, {"b", 5, 0, {}}, {"c", 1, 1, {}}};
  for (int k = 0; k < 50; ++k) {
    auto i = picker.pick(workers, route());
    ASSERT_TRUE(i);
    EXPECT_EQ(workers[*i].id, "b");
  }
  workers[1].assigned = 5;
  EXPECT_FALSE(picker.pick(workers, route()));
}

TEST(RandomPickerTest, SpreadsAndHonoursSlots) {
  RandomPicker picker(7);
  auto workers = threeWorkers(20);
  auto picks = pickMany(picker, workers, 1000);
  EXPECT_EQ(picks["a"], 20);
  EXPECT_EQ(picks["b"], 20);
  EXPECT_EQ(picks["c"], 20);
}

TEST(LeastLoadedPickerTest, PrefersMostFreeSlotsThenRatioThenId) {
  LeastLoadedPicker picker;
  std::vector<WorkerLoad> workers{{"a", 4, 3, {}}, {"b", 8, 4, {}}, {"c", 4, 0, {}}};
  // b and c both have 4 free; c's ratio (0/4) beats b's (4/8).
  EXPECT_EQ(workers[*picker.pick(workers, route())].id, "c");
  workers[2].assigned = 1;  // b: 4 free, c: 3 free
  EXPECT_EQ(workers[*picker.pick(workers, route())].id, "b");
  std::vector<WorkerLoad> same{{"y", 2, 0, {}}, {"x", 2, 0, {}}};
  EXPECT_EQ(same[*picker.pick(same, route())].id, "x");
}

TEST(LeastLoadedPickerTest, NeverExceedsSlots) {
  LeastLoadedPicker picker;
  std::vector<WorkerLoad> workers{{"a", 1, 0, {}}, {"b", 3, 1, {}}, {"c", 5, 0, {}}};
  auto picks = pickMany(picker, workers, 100);
  EXPECT_EQ(picks["a"], 1);
  EXPECT_EQ(picks["b"], 2);
  EXPECT_EQ(picks["c"], 5);
  for (const auto& w : workers) EXPECT_LE(w.assigned, w.slots);
  EXPECT_FALSE(picker.pick(workers, route()));
}

TEST(LeastLoadedPickerTest, BalancesEqualWorkers) {
  LeastLoadedPicker picker;
  auto workers = threeWorkers(10);
  auto picks = pickMany(picker, workers, 9);
  EXPECT_EQ(picks["a"], 3);
  EXPECT_EQ(picks["b"], 3);
  EXPECT_EQ(picks["c"], 3);
}

// Worker A: 2 slots and a prefetch queue of 16; B: 2 slots, no prefetch. Six tasks: whatever
// the strategy, both B's slots are used before A's queue takes anything (a task never waits in
// A's queue while B has an idle slot).
TEST(StrategyTest, IdleSlotsAnywhereComeBeforeAnyPrefetchQueue) {
  for (const char* name : {"round-robin", "random", "least-loaded"}) {
    auto picker = makePicker(name);
    std::vector<WorkerLoad> workers{{"a", 2, 0, {}, 16}, {"b", 2, 0, {}, 0}};
    auto first = pickMany(*picker, workers, 4);
    EXPECT_EQ(first["a"], 2) << name;
    EXPECT_EQ(first["b"], 2) << name;
    auto rest = pickMany(*picker, workers, 2);
    EXPECT_EQ(rest["a"], 2) << name;  // only A has room left: its queue
    workers[1].assigned = 1;          // B finished one
    EXPECT_EQ(workers[*picker->pick(workers, route())].id, "b") << name;
  }
}

// The refill watermark: a worker without an idle slot takes more only once half of its prefetch
// queue is free; idle slots and small queues are never held back.
TEST(StrategyTest, SmallRefillsAreHeldBackUntilHalfTheQueueIsFree) {
  std::vector<WorkerLoad> workers{{"busy", 8, 136, {}, 128},     // room 0
                                  {"quarter", 8, 104, {}, 128},  // room 32
                                  {"half", 8, 72, {}, 128},      // room 64
                                  {"idle", 8, 7, {}, 128},       // an idle slot
                                  {"small", 2, 2, {}, 1},        // prefetch 1: room 1
                                  {"none", 2, 1, {}, 0}};        // no prefetch, an idle slot
  holdBackSmallRefills(workers);
  EXPECT_EQ(workers[0].freeSlots(), 0);
  EXPECT_EQ(workers[1].freeSlots(), 0);
  EXPECT_EQ(workers[1].assigned, 104);  // what it holds is unchanged
  EXPECT_EQ(workers[2].freeSlots(), 64);
  EXPECT_EQ(workers[3].freeSlots(), 129);
  EXPECT_EQ(workers[4].freeSlots(), 1);
  EXPECT_EQ(workers[5].freeSlots(), 1);
  // Shown full, the quarter-free worker is not picked; the half-free one is, up to its room.
  for (const char* name : {"round-robin", "random", "least-loaded"}) {
    std::vector<WorkerLoad> two{{"a", 2, 14, {}, 16}, {"b", 2, 10, {}, 16}};
    holdBackSmallRefills(two);
    auto picker = makePicker(name);
    auto picks = pickMany(*picker, two, 10);
    EXPECT_EQ(picks["a"], 0) << name;
    EXPECT_EQ(picks["b"], 8) << name;
  }
}

TEST(MakePickerTest, KnowsTheThreeNames) {
  EXPECT_EQ(makePicker("round-robin")->name(), "round-robin");
  EXPECT_EQ(makePicker("random")->name(), "random");
  EXPECT_EQ(makePicker("least-loaded")->name(), "least-loaded");
  EXPECT_EQ(makePicker("fastest"), nullptr);
  EXPECT_EQ(makePicker(""), nullptr);
}

TEST(StrategyTest, ZeroSlotWorkersNeverPicked) {
  std::vector<WorkerLoad> workers{{"a", 0, 0, {}}};
  for (const char* name : {"round-robin", "random", "least-loaded"}) {
    EXPECT_FALSE(makePicker(name)->pick(workers, route())) << name;
  }
}

}  // namespace
}  // namespace drover::scheduler

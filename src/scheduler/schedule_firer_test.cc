// The schedule firer over a fake tree, a manual executor and a wall clock driven by it: slots of
// every_s and cron (with a daylight-saving change), catch-up after a gap, overlap skip, and a
// firing interrupted between its submit and its state write (no second task).

#include "scheduler/schedule_firer.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/eventually.h"
#include "coord/fake/fake_coordination.h"
#include "coord/paths.h"

namespace drover::scheduler {
namespace {

using coord::Code;
using coord::FakeCoordination;
using coord::FakeServer;
using coord::OpKind;
using namespace std::chrono_literals;

constexpr int64_t kT0 = 1767225600;  // 2026-01-01 00:00:00 UTC

class FirerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(coord::ensurePath(admin_, layout_.root()));
    ASSERT_TRUE(admin_.create({layout_.epoch(), "", coord::CreateMode::kPersistent, {}}).get());
    auto stat = admin_.set(layout_.epoch(), "leader-1", coord::kAnyVersion).get();
    ASSERT_TRUE(stat);
    epoch_ = stat->version;
    start_ = exec_.clock().now();
  }
  void TearDown() override {
    if (firer_) firer_->stop();
  }

  int64_t nowMs() const {
    return start_ms_ +
           std::chrono::duration_cast<std::chrono::milliseconds>(exec_.clock().now() - start_)
               .count();
  }
  int64_t nowS() const { return nowMs() / 1000; }

  // Writes a schedule as the API does, created now.
  void create(tasks::Json body) {
    if (!body.contains("task")) body["task"] = {{"type", "noop"}};
    auto spec = parseSchedule(
        body, [](const tasks::Json& t) -> tl::expected<tasks::Json, tasks::ValidationError> {
          auto s = tasks::parseSpec(t, {});
          if (!s) return tl::unexpected(s.error());
          return tasks::toJson(*s);
        });
    ASSERT_TRUE(spec) << spec.error().field << ": " << spec.error().detail;
    ASSERT_TRUE(coord::ensurePath(admin_, schedulesPath(layout_)));
    ASSERT_TRUE(admin_.multi(createScheduleOps(layout_, *spec, nowS())).get());
  }

  ScheduleState state(const std::string& id) {
    auto n = admin_.get(scheduleStatePath(layout_, id), nullptr).get();
    EXPECT_TRUE(n);
    if (!n) return {};
    return *scheduleStateFromJson(*tasks::parseJson(n->data));
  }

  void startFirer(int32_t epoch = -1) {
    ScheduleFirer::Callbacks cb;
    cb.submit = [this](const tasks::TaskSpec& spec) {
      submits_[spec.id]++;
      auto it = tasks_.find(spec.id);
      if (it != tasks_.end()) {
        return it->second == spec ? ScheduleFirer::Submitted::kRepeat
                                  : ScheduleFirer::Submitted::kRefused;
      }
      tasks_.emplace(spec.id, spec);
      order_.push_back(spec.id);
      return ScheduleFirer::Submitted::kSubmitted;
    };
    cb.progress = [this](const std::string& id) {
      return active_.count(id) ? ScheduleFirer::Progress::kActive : ScheduleFirer::Progress::kDone;
    };
    cb.now_ms = [this] { return nowMs(); };
    cb.fenced = [this](const std::string& reason) { fenced_.push_back(reason); };
    ScheduleFirer::Options o;
    o.max_wait = std::chrono::hours(1);  // timers must do the work, not polling
    firer_ = std::make_unique<ScheduleFirer>(session_, layout_, epoch < 0 ? epoch_ : epoch, exec_,
                                             cb, o);
    firer_->start();
    exec_.runReady();
  }

  // Moves time forward in steps, as a running executor would see it.
  void advance(std::chrono::seconds d) {
    for (auto left = d; left > 0s; left -= 1s) exec_.advance(1s);
    exec_.runReady();
  }

  std::vector<std::string> idsOf(const std::string& sched) const {
    std::vector<std::string> out;
    for (const auto& id : order_) {
      if (id.rfind(sched + "-", 0) == 0) out.push_back(id);
    }
    return out;
  }
  static std::string id(const std::string& sched, int64_t slot) {
    return sched + "-" + std::to_string(slot);
  }

  std::shared_ptr<FakeServer> server_ = std::make_shared<FakeServer>();
  FakeCoordination admin_{server_};
  FakeCoordination session_{server_};
  tasks::Layout layout_{"/drover"};
  base::ManualExecutor exec_;
  base::TimePoint start_;
  int64_t start_ms_ = kT0 * 1000;
  int32_t epoch_ = 0;
  std::unique_ptr<ScheduleFirer> firer_;
  std::map<std::string, tasks::TaskSpec> tasks_;
  std::map<std::string, int> submits_;
  std::vector<std::string> order_;
  std::set<std::string> active_;
  std::vector<std::string> fenced_;
};

TEST_F(FirerTest, EverySecondsFiresEachAlignedSlotOnce) {
  create({{"id", "tick"}, {"every_s", 2}});
  startFirer();
  advance(10s);
  std::vector<std::string> want;
  for (int64_t s = kT0 + 2; s <= kT0 + 10; s += 2) want.push_back(id("tick", s));
  EXPECT_EQ(idsOf("tick"), want);
  auto st = state("tick");
  EXPECT_EQ(st.cursor, kT0 + 10);
  EXPECT_EQ(st.last_slot, kT0 + 10);
  EXPECT_EQ(st.last_task, id("tick", kT0 + 10));
  EXPECT_EQ(st.fired, 5);
  for (const auto& [task, n] : submits_) EXPECT_EQ(n, 1) << task;
  // The firing carries the schedule's task.
  EXPECT_EQ(tasks_.at(id("tick", kT0 + 2)).type, "noop");
}

TEST_F(FirerTest, CronSlotsAreItsMatches) {
  create({{"id", "hourly"}, {"cron", "15 * * * *"}});
  create({{"id", "secs"}, {"cron", "*/20 * * * * *"}});
  startFirer();
  advance(2h);
  EXPECT_EQ(idsOf("hourly"),
            (std::vector<std::string>{id("hourly", kT0 + 900), id("hourly", kT0 + 3600 + 900)}));
  EXPECT_EQ(idsOf("secs").size(), 2u * 3600 / 20);
  EXPECT_EQ(idsOf("secs").front(), id("secs", kT0 + 20));
}

TEST_F(FirerTest, DaylightSavingThroughTheCronModule) {
  // America/New_York springs forward on 2026-03-08 at 02:00: 02:30 does not exist that day and
  // fires once at 03:00 EDT (docs/WORKFLOWS.md).
  start_ms_ = (1772868600 - 3600) * 1000LL;  // 2026-03-07 01:30 EST
  create({{"id", "ny"}, {"cron", "30 2 * * *"}, {"timezone", "America/New_York"}});
  startFirer();
  advance(std::chrono::hours(3 * 24 - 2));  // to 2026-03-10 00:30 EDT
  EXPECT_EQ(idsOf("ny"), (std::vector<std::string>{id("ny", 1772868600), id("ny", 1772953200),
                                                   id("ny", 1773037800)}));
}

TEST_F(FirerTest, CatchupAfterAGap) {
  create({{"id", "none"}, {"every_s", 60}, {"catchup", "none"}});
  create({{"id", "one"}, {"every_s", 60}, {"catchup", "one"}});
  create({{"id", "all"}, {"every_s", 60}, {"catchup", "all"}});
  advance(150s);  // no leader: slots T0+60 and T0+120 pass unfired
  EXPECT_TRUE(order_.empty());
  startFirer();
  EXPECT_TRUE(idsOf("none").empty());  // 30 s late: past on_time
  EXPECT_EQ(state("none").skipped, 2);
  EXPECT_EQ(state("none").cursor, kT0 + 120);
  EXPECT_EQ(idsOf("one"), std::vector<std::string>{id("one", kT0 + 120)});
  EXPECT_EQ(state("one").skipped, 1);
  EXPECT_EQ(idsOf("all"), (std::vector<std::string>{id("all", kT0 + 60), id("all", kT0 + 120)}));
  // And on time from then on, for all three.
  order_.clear();
  advance(40s);
  EXPECT_EQ(order_.size(), 3u);
  EXPECT_EQ(firer_->stats().skipped, 3);
}

TEST_F(FirerTest, CatchupAllIsBounded) {
  create({{"id", "many"}, {"every_s", 1}, {"catchup", "all"}});
  advance(1500s);
  startFirer();
  auto ids = idsOf("many");
  ASSERT_EQ(ids.size(), static_cast<size_t>(kMaxCatchupSlots));
  EXPECT_EQ(ids.front(), id("many", kT0 + 501));  // the oldest 500 passed over
  EXPECT_EQ(ids.back(), id("many", kT0 + 1500));
  EXPECT_EQ(state("many").skipped, 500);
}

TEST_F(FirerTest, OverlapSkipWaitsForThePreviousTask) {
  create({{"id", "slow"}, {"every_s", 10}, {"overlap", "skip"}});
  create({{"id", "fast"}, {"every_s", 10}});
  startFirer();
  advance(10s);
  ASSERT_EQ(idsOf("slow").size(), 1u);
  active_.insert(id("slow", kT0 + 10));
  active_.insert(id("fast", kT0 + 10));
  advance(20s);  // slots +20 and +30: slow's task still runs
  EXPECT_EQ(idsOf("slow").size(), 1u);
  EXPECT_EQ(idsOf("fast").size(), 3u);  // allow fires regardless
  EXPECT_EQ(state("slow").skipped, 2);
  active_.clear();
  advance(10s);
  EXPECT_EQ(idsOf("slow"), (std::vector<std::string>{id("slow", kT0 + 10), id("slow", kT0 + 40)}));
}

TEST_F(FirerTest, LostStateWriteFiresNoDuplicate) {
  create({{"id", "tick"}, {"every_s", 5}});
  startFirer();
  session_.failNextOn(OpKind::kMulti, scheduleStatePath(layout_, "tick"), Code::kConnectionLoss);
  advance(5s);  // the submit lands, its state write is lost: the slot is fired again
  EXPECT_EQ(session_.pendingFaults(), 0u);  // the fault fired
  advance(2s);
  EXPECT_EQ(submits_[id("tick", kT0 + 5)], 2);
  EXPECT_EQ(idsOf("tick"), std::vector<std::string>{id("tick", kT0 + 5)});
  EXPECT_EQ(state("tick").cursor, kT0 + 5);
  EXPECT_EQ(state("tick").fired, 1);
  EXPECT_GE(firer_->stats().retries, 1);
}

TEST_F(FirerTest, LeaderDyingBetweenSubmitAndStateWriteFiresNoDuplicate) {
  create({{"id", "tick"}, {"every_s", 5}, {"catchup", "all"}});
  startFirer();
  // Another node is elected while this one fires: its state write is refused by the fence.
  int32_t next_epoch = 0;
  session_.beforeNextOn(OpKind::kMulti, scheduleStatePath(layout_, "tick"), [&] {
    next_epoch = admin_.set(layout_.epoch(), "leader-2", coord::kAnyVersion).get()->version;
  });
  advance(5s);
  ASSERT_EQ(fenced_.size(), 1u);
  EXPECT_EQ(submits_[id("tick", kT0 + 5)], 1);
  EXPECT_EQ(state("tick").cursor, kT0);  // not advanced
  advance(5s);                           // the fenced firer fires nothing more
  EXPECT_EQ(submits_.count(id("tick", kT0 + 10)), 0u);
  // The new leader's firer catches up: it repeats slot +5 (a repeat, no second task) and
  // fires +10.
  firer_->stop();
  startFirer(next_epoch);
  EXPECT_EQ(submits_[id("tick", kT0 + 5)], 2);
  EXPECT_EQ(idsOf("tick"), (std::vector<std::string>{id("tick", kT0 + 5), id("tick", kT0 + 10)}));
  EXPECT_EQ(state("tick").cursor, kT0 + 10);
}

TEST_F(FirerTest, ADeletedScheduleStopsFiring) {
  create({{"id", "gone"}, {"every_s", 5}});
  startFirer();
  advance(5s);
  ASSERT_EQ(idsOf("gone").size(), 1u);
  ASSERT_TRUE(admin_.multi(deleteScheduleOps(layout_, "gone")).get());
  // The children watch arrives on the fake's event thread and posts a re-read.
  ASSERT_TRUE(base::eventually([&] { return exec_.runReady() > 0; }));
  advance(20s);
  EXPECT_EQ(idsOf("gone").size(), 1u);
}

TEST(ScheduleSpecTest, BadInputIsAnErrorNamingTheField) {
  auto check = [](const tasks::Json& t) -> tl::expected<tasks::Json, tasks::ValidationError> {
    auto s = tasks::parseSpec(t, {});
    if (!s) return tl::unexpected(s.error());
    return tasks::toJson(*s);
  };
  auto field = [&](tasks::Json body) {
    auto r = parseSchedule(body, check);
    return r ? std::string("ok") : r.error().field;
  };
  const tasks::Json task = {{"type", "noop"}};
  EXPECT_EQ(field({{"id", "a"}, {"cron", "61 * * * *"}, {"task", task}}), "cron");
  EXPECT_EQ(field({{"id", "a"}, {"cron", "* * * * *"}, {"every_s", 5}, {"task", task}}), "cron");
  EXPECT_EQ(field({{"id", "a"}, {"every_s", 0}, {"task", task}}), "every_s");
  EXPECT_EQ(field({{"id", "a"}, {"every_s", 5}, {"timezone", "Mars/Base"}, {"task", task}}),
            "timezone");
  EXPECT_EQ(field({{"id", "a b"}, {"every_s", 5}, {"task", task}}), "id");
  EXPECT_EQ(field({{"id", std::string(101, 'a')}, {"every_s", 5}, {"task", task}}), "id");
  EXPECT_EQ(field({{"id", "a"}, {"every_s", 5}}), "task");
  EXPECT_EQ(field({{"id", "a"}, {"every_s", 5}, {"task", {{"id", "x"}, {"type", "noop"}}}}),
            "task.id");
  EXPECT_EQ(field({{"id", "a"}, {"every_s", 5}, {"task", {{"type", "noop"}, {"priority", 99}}}}),
            "task.priority");
  EXPECT_EQ(field({{"id", "a"}, {"every_s", 5}, {"task", task}, {"overlap", "never"}}), "overlap");
  EXPECT_EQ(field({{"id", "a"}, {"every_s", 5}, {"task", task}, {"catchup", "some"}}), "catchup");
  EXPECT_EQ(field({{"id", "a"}, {"every_s", 5}, {"task", task}, {"extra", 1}}), "extra");
  EXPECT_EQ(field({{"id", "a"},
                   {"cron", "0 3 * * *"},
                   {"timezone", "Europe/Berlin"},
                   {"task", task},
                   {"overlap", "skip"},
                   {"catchup", "all"}}),
            "ok");
}

TEST(ScheduleSpecTest, RoundTripsThroughJson) {
  ScheduleSpec s{"a",          "0 3 * * *", 0, "Europe/Berlin", {{"type", "noop"}}, Overlap::kSkip,
                 Catchup::kOne};
  EXPECT_EQ(scheduleFromJson(toJson(s)), s);
  ScheduleState st{100, 95, "a-95", 3, 2};
  EXPECT_EQ(scheduleStateFromJson(toJson(st)), st);
}

}  // namespace
}  // namespace drover::scheduler

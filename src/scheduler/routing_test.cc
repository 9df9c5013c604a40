#include "scheduler/routing.h"

#include <gtest/gtest.h>

#include "scheduler/batch_scheduler_fixture.h"
#include "scheduler/job_index.h"

namespace drover::scheduler {
namespace {

Route route(std::string queue, std::vector<std::string> labels, std::string type) {
  return Route{std::move(queue), std::move(labels), std::move(type)};
}

TEST(Routing, AWorkerServesARouteOnlyWithItsQueueEveryLabelAndTheType) {
  WorkerRouting gpu{{"default", "ml"}, {"gpu", "linux"}, {"noop", "train"}, false};
  EXPECT_TRUE(serves(gpu, route("ml", {"gpu"}, "train")));
  EXPECT_TRUE(serves(gpu, route("default", {}, "noop")));
  EXPECT_FALSE(serves(gpu, route("etl", {}, "noop")));              // queue
  EXPECT_FALSE(serves(gpu, route("ml", {"gpu", "arm"}, "train")));  // a label missing
  EXPECT_FALSE(serves(gpu, route("ml", {}, "exec")));               // type
  WorkerRouting old{{"default"}, {}, {}, false};                    // predates routing: any type
  EXPECT_TRUE(serves(old, route("default", {}, "exec")));
  gpu.draining = true;
  EXPECT_FALSE(serves(gpu, route("ml", {"gpu"}, "train")));
}

TEST(Routing, WaitingForSaysWhatIsMissing) {
  std::vector<WorkerRouting> fleet{{{"default"}, {"linux"}, {"noop"}, false},
                                   {{"ml"}, {"gpu"}, {"train"}, false}};
  EXPECT_EQ(waitingFor({}, route("default", {}, "noop"), {}, 0), "no live worker");
  EXPECT_EQ(waitingFor(fleet, route("etl", {}, "noop"), {}, 0),
            "no live worker serves queue 'etl'");
  EXPECT_EQ(waitingFor(fleet, route("ml", {"big", "gpu"}, "train"), {}, 0),
            "no live worker of queue 'ml' has labels [big, gpu]");
  EXPECT_EQ(waitingFor(fleet, route("ml", {"gpu"}, "exec"), {}, 0),
            "no live worker of queue 'ml' with labels [gpu] runs type 'exec'");
  EXPECT_EQ(waitingFor(fleet, route("ml", {}, "train"), QueueSettings{true, 0}, 0),
            "queue 'ml' is paused");
  EXPECT_EQ(waitingFor(fleet, route("ml", {}, "train"), QueueSettings{false, 2}, 2),
            "queue 'ml' is at its limit of 2 running");
  EXPECT_EQ(waitingFor(fleet, route("ml", {}, "train"), QueueSettings{false, 2}, 1), "a free slot");
  fleet[1].draining = true;
  EXPECT_EQ(waitingFor(fleet, route("ml", {}, "train"), {}, 0),
            "every worker that may take it is draining");
}

TEST(Routing, QueueSettingsRoundTripAndRefuseBadValues) {
  auto q = queueSettingsFromJson(toJson(QueueSettings{true, 7}));
  ASSERT_TRUE(q);
  EXPECT_EQ(*q, (QueueSettings{true, 7}));
  for (const char* bad : {R"([])", R"({"paused":"yes"})", R"({"max_running":-1})",
                          R"({"max_running":1.5})", R"({"max_running":100000000})"}) {
    EXPECT_FALSE(queueSettingsFromJson(tasks::Json::parse(bad))) << bad;
  }
}

TEST(Routing, JobIndexSkipsBlockedRoutesWithoutLosingOrder) {
  tasks::BatchRecord batch;
  batch.name = "1a22ee6b0000f3a1";
  auto add = [&](const std::string& id, int priority, std::string queue) {
    tasks::TaskSpec spec;
    spec.id = id;
    spec.type = "noop";
    spec.priority = priority;
    spec.queue = std::move(queue);
    batch.tasks.push_back(std::move(spec));
  };
  add("a", 9, "etl");
  add("b", 5, "default");
  add("c", 9, "default");
  auto record = std::make_shared<const PackedRecord>(PackedRecord::pack(batch));
  JobIndex index;
  std::map<std::string, JobIndex::Key> keys;
  for (uint32_t i = 0; i < record->size(); ++i) {
    index.add(JobIndex::Entry{record, i, 1, 0, 1, ""}, 0);
    keys[record->id(i)] = JobIndex::keyOf(record.get(), i);
  }
  EXPECT_EQ(index.nextExcept({})->id(), "a");
  std::set<Route> blocked{route("etl", {}, "noop")};
  EXPECT_EQ(index.nextExcept(blocked)->id(), "c");
  blocked.insert(route("default", {}, "noop"));
  EXPECT_FALSE(index.nextExcept(blocked));
  EXPECT_EQ(index.readyByRoute().at(route("default", {}, "noop")), 2u);
  index.take(keys.at("c"));
  index.take(keys.at("b"));
  EXPECT_EQ(index.readyByRoute().count(route("default", {}, "noop")), 0u);
}

// --- The leader ---

class RoutingLeaderTest : public BatchSchedulerTest {
 protected:
  void addRoutedWorker(const std::string& id, int slots, std::vector<std::string> queues,
                       std::vector<std::string> labels, std::vector<std::string> types) {
    tasks::WorkerInfo info{
        id, "host", 1, slots, std::move(labels), "", 0, 0, std::move(queues), std::move(types)};
    ASSERT_TRUE(coord::ensurePath(admin_, layout_.assignmentsOf(id)));
    ASSERT_TRUE(workers_
                    .create(CreateOp{
                        layout_.worker(id), tasks::toJson(info).dump(), CreateMode::kEphemeral, {}})
                    .get());
    names_.push_back(id);
  }
  void submitRouted(const std::string& id, const std::string& queue,
                    std::vector<std::string> labels = {}, std::string type = "noop") {
    auto s = spec(5, 3, queue, id);
    s.labels = std::move(labels);
    s.type = std::move(type);
    submit({s});
  }
  // Task id -> the worker whose chunk holds it.
  std::map<std::string, std::string> assignments() {
    std::map<std::string, std::string> out;
    for (const auto& w : names_) {
      for (const auto& item : items(w)) out[item.id] = w;
    }
    return out;
  }
  bool isAssigned(const std::string& id) { return assignments().count(id) > 0; }
  // Runs the leader until `pred` holds (true) or for `within` (false).
  bool settleWithin(const std::function<bool()>& pred, std::chrono::milliseconds within) {
    return base::eventually(
        [&] {
          exec_.runReady();
          return pred();
        },
        within);
  }
  // The worker commits `id`'s outcome.
  void complete(const std::string& w, const std::string& id) {
    for (const auto& c : chunks(w)) {
      for (const auto& item : c.chunk.items) {
        if (item.id != id) continue;
        ASSERT_TRUE(actors::commit(admin_, layout_, w, c, {item.ref}, wall()));
        return;
      }
    }
    FAIL() << id << " is not on " << w;
  }

  std::vector<std::string> names_;
};

TEST_F(RoutingLeaderTest, EachTaskGoesOnlyToAWorkerThatMayTakeIt) {
  addRoutedWorker("plain", 8, {"default"}, {}, {"noop"});
  addRoutedWorker("gpu", 8, {"default", "ml"}, {"gpu"}, {"noop", "train"});
  submitRouted("d1", "default");
  submitRouted("ml1", "ml", {"gpu"}, "train");
  submitRouted("ml2", "ml", {}, "train");
  submitRouted("gpu-noop", "default", {"gpu"});
  start();
  ASSERT_TRUE(settle([&] { return assignments().size() == 4; }));
  auto where = assignments();
  EXPECT_EQ(where["ml1"], "gpu");
  EXPECT_EQ(where["ml2"], "gpu");
  EXPECT_EQ(where["gpu-noop"], "gpu");
}

TEST_F(RoutingLeaderTest, AnUnroutableTaskWaitsWithoutHoldingUpOthersAndRunsWhenAWorkerCan) {
  addRoutedWorker("w1", 4, {"default"}, {}, {"noop"});
  submitRouted("arm", "default", {"arm"}, "noop");  // first in line, nobody may take it
  submitRouted("x", "default");
  submitRouted("y", "default");
  start();
  ASSERT_TRUE(settle([&] { return isAssigned("x") && isAssigned("y"); }));
  EXPECT_FALSE(isAssigned("arm"));
  addRoutedWorker("pi", 1, {"default"}, {"arm"}, {"noop"});
  ASSERT_TRUE(settle([&] { return isAssigned("arm"); }));
  EXPECT_EQ(assignments()["arm"], "pi");
}

TEST_F(RoutingLeaderTest, AQueueLimitHoldsAcrossWorkersAndFreesAsTasksEnd) {
  ASSERT_TRUE(admin_
                  .create(CreateOp{layout_.queue("etl"),
                                   toJson(QueueSettings{false, 2}).dump(),
                                   CreateMode::kPersistent,
                                   {}})
                  .get());
  addRoutedWorker("w1", 4, {"etl"}, {}, {"noop"});
  addRoutedWorker("w2", 4, {"etl"}, {}, {"noop"});
  for (int i = 0; i < 5; ++i) submitRouted("e" + std::to_string(i), "etl");
  start();
  ASSERT_TRUE(settle([&] { return assignments().size() == 2; }));
  // Room on both workers, yet the queue holds at its limit.
  EXPECT_FALSE(settleWithin([&] { return assignments().size() > 2; }, 300ms));
  auto held = assignments();
  complete(held.begin()->second, held.begin()->first);
  ASSERT_TRUE(settle([&] {
    auto now = assignments();
    return now.size() == 2 && !now.count(held.begin()->first);
  }));
}

TEST_F(RoutingLeaderTest, APausedQueueHoldsItsTasksUntilResumed) {
  ASSERT_TRUE(admin_
                  .create(CreateOp{layout_.queue("batch"),
                                   toJson(QueueSettings{true, 0}).dump(),
                                   CreateMode::kPersistent,
                                   {}})
                  .get());
  addRoutedWorker("w1", 4, {"default", "batch"}, {}, {"noop"});
  submitRouted("held", "batch");
  submitRouted("free", "default");
  start();
  ASSERT_TRUE(settle([&] { return isAssigned("free"); }));
  EXPECT_FALSE(settleWithin([&] { return isAssigned("held"); }, 300ms));
  ASSERT_TRUE(
      admin_.set(layout_.queue("batch"), toJson(QueueSettings{false, 0}).dump(), coord::kAnyVersion)
          .get());
  EXPECT_TRUE(settle([&] { return isAssigned("held"); }));
}

TEST_F(RoutingLeaderTest, ADrainingWorkerTakesNothingNew) {
  addRoutedWorker("old", 4, {"default"}, {}, {"noop"});
  submitRouted("a", "default");
  start();
  ASSERT_TRUE(settle([&] { return isAssigned("a"); }));
  ASSERT_TRUE(admin_.create(CreateOp{layout_.drain("old"), "", CreateMode::kPersistent, {}}).get());
  ASSERT_TRUE(settle([&] {
    auto w = scheduler_->snapshot().workers;
    return w.size() == 1 && w[0].routing.draining;
  }));
  submitRouted("b", "default");
  EXPECT_FALSE(settleWithin([&] { return isAssigned("b"); }, 300ms));
  addRoutedWorker("new", 4, {"default"}, {}, {"noop"});
  ASSERT_TRUE(settle([&] { return isAssigned("b"); }));
  EXPECT_EQ(assignments()["b"], "new");
  EXPECT_EQ(assignments()["a"], "old");  // what it holds stays with it
}

}  // namespace
}  // namespace drover::scheduler

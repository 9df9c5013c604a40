// The leader's assignment rate with routing (docs/ROUTING.md "How the leader matches"): a
// scheduler on an in-memory tree assigns N pending tasks to W workers, with every task on one
// route, then spread over R routes with workers of different queues and labels. The tree is the
// fake coordination layer, so what it measures is the leader's own CPU per assigned task (the
// ZooKeeper round trips of a real ensemble are the end-to-end bench's business). A tool run by
// hand, not a test: it asserts nothing and its figures depend on the machine.
//
//   build/bench/assign_overhead [tasks] [workers]

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/eventually.h"
#include "coord/fake/fake_coordination.h"
#include "coord/paths.h"
#include "scheduler/scheduler.h"
#include "tasks/transitions.h"

namespace drover {
namespace {

using namespace std::chrono_literals;

struct Run {
  double seconds = 0;
  uint64_t assigned = 0;
};

// Seeds `tasks` pending tasks over `routes` routes and `workers` workers (worker i serves route
// i % routes), then times the scheduler from start until every task is assigned.
Run run(int tasks, int workers, int routes) {
  auto server = std::make_shared<coord::FakeServer>();
  coord::FakeCoordination admin(server);
  coord::FakeCoordination leader(server);
  tasks::Layout layout("/bench");
  for (const auto& d : layout.directories()) (void)coord::ensurePath(admin, d);
  (void)admin.create({layout.epoch(), "", coord::CreateMode::kPersistent, {}}).get();
  int32_t epoch = admin.set(layout.epoch(), "bench", coord::kAnyVersion).get()->version;
  auto queueOf = [](int r) { return "q" + std::to_string(r % 4); };
  auto labelsOf = [](int r) {
    return r < 4 ? std::vector<std::string>{} : std::vector<std::string>{"l" + std::to_string(r)};
  };
  for (int w = 0; w < workers; ++w) {
    int r = w % routes;
    tasks::WorkerInfo info;
    info.id = "w" + std::to_string(w);
    info.slots = tasks;  // room never binds: what is timed is matching and picking
    info.queues = {queueOf(r)};
    info.labels = labelsOf(r);
    info.types = {"noop"};
    (void)admin.create({layout.assignmentsOf(info.id), "", coord::CreateMode::kPersistent, {}})
        .get();
    (void)admin
        .create(
            {layout.worker(info.id), tasks::toJson(info).dump(), coord::CreateMode::kEphemeral, {}})
        .get();
  }
  const int64_t now = base::wallMillis();
  for (int i = 0; i < tasks; i += 500) {
    tasks::Txn txn(layout);
    for (int k = i; k < std::min(tasks, i + 500); ++k) {
      tasks::TaskStatus s;
      s.spec.id = "t" + std::to_string(k);
      s.spec.type = "noop";
      s.spec.queue = queueOf(k % routes);
      s.spec.labels = labelsOf(k % routes);
      s.spec.priority = k % 10;
      s.submitted_at = now;
      txn.add(tasks::submit(layout, s));
    }
    (void)admin.multi(std::move(txn).finish().ops).get();
  }
  scheduler::Scheduler::Options options;
  options.first_assign_after = 0ms;
  options.sweep_interval = std::chrono::hours(1);
  auto start = std::chrono::steady_clock::now();
  scheduler::Scheduler s(leader, layout, options, epoch, [](std::string) {});
  s.start();
  bool done = base::eventually(
      [&] { return s.snapshot().assigned_total >= static_cast<uint64_t>(tasks); }, 300s, 1ms);
  Run out;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out.assigned = s.snapshot().assigned_total;
  s.stop();
  if (!done) std::fprintf(stderr, "only %lu of %d assigned\n", out.assigned, tasks);
  return out;
}

}  // namespace
}  // namespace drover

int main(int argc, char** argv) {
  int tasks = argc > 1 ? std::atoi(argv[1]) : 20000;
  int workers = argc > 2 ? std::atoi(argv[2]) : 16;
  std::printf("%d tasks, %d workers, in-memory tree (leader CPU only)\n", tasks, workers);
  std::printf("%-8s %12s %14s %10s\n", "routes", "seconds", "tasks/s", "vs 1 route");
  double base = 0;
  for (int routes : {1, 4, 8, 16}) {
    auto r = drover::run(tasks, workers, routes);
    double rate = static_cast<double>(r.assigned) / r.seconds;
    if (routes == 1) base = rate;
    std::printf("%-8d %12.3f %14.0f %9.2fx\n", routes, r.seconds, rate, rate / base);
  }
  return 0;
}

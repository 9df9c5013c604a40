#pragma once

// What bench/batch_leader and bench/leader_memory share: the protocol-v2 tree on the in-memory
// server, no-op batches submitted to it, and a BatchScheduler leading it on a ManualExecutor.
// Tools run by hand, not tests; a setup failure ends the process with a message.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "base/executor.h"
#include "coord/fake/fake_coordination.h"
#include "coord/paths.h"
#include "scheduler/batch_scheduler.h"
#include "scheduler/batch_test_actors.h"

namespace drover::bench {

struct LeaderTree {
  tasks::Layout layout{"/bench"};
  std::shared_ptr<coord::FakeServer> server = std::make_shared<coord::FakeServer>();
  coord::FakeCoordination admin{server};   // the simulated API and workers
  coord::FakeCoordination leader{server};  // the scheduler's session
  int32_t epoch = -1;

  LeaderTree() {
    for (const auto& dir : layout.directories()) {
      if (!coord::ensurePath(admin, dir)) fail("cannot create " + dir);
    }
    (void)admin.create({layout.epoch(), "", coord::CreateMode::kPersistent, {}}).get();
    auto set = admin.set(layout.epoch(), "bench", -1).get();
    if (!set) fail("cannot write the epoch");
    epoch = set->version;
  }

  // Submits `total` no-op tasks (payload {"n": i}, as drover_bench's backlog) in batches of
  // `batch_size`; returns the batch names in submit order.
  std::vector<std::string> submitNoops(size_t total, size_t batch_size) {
    const int64_t t_submit = 1'760'000'000'000;
    uint32_t random = 0;
    std::vector<std::string> names;
    for (size_t done = 0; done < total; done += batch_size) {
      std::vector<tasks::TaskSpec> specs(std::min(batch_size, total - done));
      for (size_t i = 0; i < specs.size(); ++i) {
        specs[i].type = "noop";
        specs[i].payload = {{"n", done + i}};
      }
      names.push_back(scheduler::testing::submitBatch(admin, layout, std::move(specs),
                                                      t_submit + done, ++random));
      if (names.back().empty()) fail("submit failed");
    }
    return names;
  }

  // A scheduler leading the tree on `exec`: no sweep, assigning as soon as it starts.
  std::unique_ptr<scheduler::BatchScheduler> scheduler(base::ManualExecutor& exec) {
    scheduler::BatchScheduler::Options options;
    options.sweep_interval = std::chrono::hours(1);
    options.first_assign_after = std::chrono::milliseconds(0);
    return std::make_unique<scheduler::BatchScheduler>(
        leader, layout, options, epoch, [](std::string reason) { fail("fenced: " + reason); },
        exec);
  }

  [[noreturn]] static void fail(const std::string& why) {
    std::fprintf(stderr, "%s\n", why.c_str());
    std::exit(1);
  }
};

}  // namespace drover::bench

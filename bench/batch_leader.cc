// The protocol-v2 leader's cost per task on the in-memory tree (docs/PERFORMANCE.md): 100,000
// tasks in batches, 16 simulated workers committing whole chunks, the BatchScheduler on a
// ManualExecutor run by this thread. Prints the leader's rate and its CPU per task, measured
// with getrusage(RUSAGE_THREAD) around the executor's turns only (the simulated API and
// workers run between them and are not counted; the in-memory tree's own work inside the
// leader's calls is, as the ZooKeeper client's would be). A tool run by hand, not a test.
//
//   batch_leader [tasks] [workers] [batch size]

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "leader_tree.h"

using namespace drover;
namespace actors = drover::scheduler::testing;

namespace {

int64_t threadCpuMicros() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1'000'000LL + u.ru_utime.tv_usec +
         u.ru_stime.tv_usec;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t total = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 100'000;
  const int n_workers = argc > 2 ? std::atoi(argv[2]) : 16;
  const size_t batch_size = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 1000;

  bench::LeaderTree tree;
  std::vector<std::string> workers;
  for (int i = 0; i < n_workers; ++i) {
    std::string id = "w" + std::to_string(i);
    tasks::WorkerInfo info{id, "host", 1, 8, {}, "", 0, 56, {"default"}, {}};
    (void)coord::ensurePath(tree.admin, tree.layout.assignmentsOf(id));
    (void)tree.admin
        .create(
            {tree.layout.worker(id), tasks::toJson(info).dump(), coord::CreateMode::kEphemeral, {}})
        .get();
    workers.push_back(id);
  }
  const int64_t t_submit = 1'760'000'000'000;  // the commits' time
  tree.submitNoops(total, batch_size);

  base::ManualExecutor exec;
  auto scheduler = tree.scheduler(exec);
  auto& s = *scheduler;

  auto start = std::chrono::steady_clock::now();
  int64_t leader_cpu = 0;
  size_t committed = 0;
  auto turn = [&] {
    int64_t before = threadCpuMicros();
    size_t ran = exec.runReady();
    leader_cpu += threadCpuMicros() - before;
    return ran;
  };
  s.start();
  while (committed < total) {
    size_t ran = turn();
    size_t now_committed = committed;
    for (const auto& w : workers) {
      for (const auto& c : actors::chunksOf(tree.admin, tree.layout, w)) {
        if (actors::commit(tree.admin, tree.layout, w, c, actors::refsOf(c.chunk), t_submit)) {
          committed += c.chunk.items.size();
        }
      }
    }
    if (ran == 0 && committed == now_committed) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));  // watches on their way
    }
    if (std::chrono::steady_clock::now() - start > std::chrono::minutes(10)) {
      std::fprintf(stderr, "stuck at %zu of %zu\n", committed, total);
      return 1;
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto stats = s.snapshot();
  s.stop();
  std::printf("tasks %zu, workers %d, batch size %zu: %zu assigned in %zu multis\n", total,
              n_workers, batch_size, static_cast<size_t>(stats.assigned_total),
              static_cast<size_t>(stats.batches));
  std::printf("end to end (leader and simulated workers on one thread): %.0f tasks/s\n",
              total / secs);
  std::printf("leader CPU: %.1f us/task (%.2f s), i.e. %.0f tasks/s of leader CPU\n",
              static_cast<double>(leader_cpu) / total, leader_cpu / 1e6,
              total / (leader_cpu / 1e6));
  return 0;
}

// The v2 worker's own cost (worker::ChunkAgent, docs/ZNODES.md "Protocol v2"): 100,000 no-op
// tasks in chunks of 64 on the in-memory tree. A feeder thread plays the API and the leader
// (its CPU, the fake tree's work for its calls included, is subtracted); the rest of the
// process's CPU is the worker's: the agent, the Runner and the fake tree serving the agent.
// A tool run by hand, not a test.

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "base/clock.h"
#include "coord/fake/fake_coordination.h"
#include "coord/paths.h"
#include "tasks/protocol.h"
#include "worker/chunk_agent.h"

using namespace drover;
using namespace std::chrono_literals;

namespace {

double cpuMicros(int who) {
  rusage u{};
  getrusage(who, &u);
  auto us = [](const timeval& t) { return t.tv_sec * 1e6 + t.tv_usec; };
  return us(u.ru_utime) + us(u.ru_stime);
}

}  // namespace

int main(int argc, char** argv) {
  const int total = argc > 1 ? std::atoi(argv[1]) : 100'000;
  const uint32_t per_chunk = 64;
  const int slots = 8;
  const int in_flight_chunks = 4;  // what the leader keeps assigned (slots + prefetch)
  auto server = std::make_shared<coord::FakeServer>();
  coord::FakeCoordination admin(server);
  coord::FakeCoordination session(server);
  tasks::Layout layout("/bench");
  const std::string w = "w1";
  for (const auto& dir : layout.directories()) (void)coord::ensurePath(admin, dir);
  (void)coord::ensurePath(admin, layout.epoch());
  (void)coord::ensurePath(admin, layout.workers());
  (void)coord::ensurePath(admin, layout.assignmentsOf(w));
  tasks::WorkerInfo info;
  info.id = w;
  (void)session
      .create({layout.worker(w), tasks::toJson(info).dump(), coord::CreateMode::kEphemeral, {}})
      .get();

  // Batches of 64 (submitted by the feeder just before it assigns them).
  std::vector<tasks::BatchRecord> batches;
  int64_t now = base::wallMillis();
  for (int b = 0; b * static_cast<int>(per_chunk) < total; ++b) {
    tasks::BatchRecord batch;
    batch.submitted_at = now;
    batch.name = tasks::makeBatchName(now, static_cast<uint32_t>(b));
    for (uint32_t i = 0; i < per_chunk && b * per_chunk + i < static_cast<uint32_t>(total); ++i) {
      tasks::TaskSpec spec;
      spec.id = tasks::generatedId({batch.name, i});
      spec.type = "noop";
      batch.tasks.push_back(spec);
    }
    std::string bucket = batch.name.substr(0, tasks::Layout::kBatchBucketDigits);
    (void)coord::ensurePath(admin, layout.batchBucket(bucket));
    (void)coord::ensurePath(admin, layout.pendingBucket(bucket));
    batches.push_back(std::move(batch));
  }
  // Retention, played by the feeder: the fake tree copies itself on every multi (to undo a
  // failed one), so a tree that grows would bill the worker for the fake's copying.
  auto expire = [&](const tasks::BatchRecord& batch) {
    auto kids = admin.children(layout.batch(batch.name), nullptr).get();
    if (kids) {
      for (const auto& k : *kids) (void)admin.remove(layout.batch(batch.name) + "/" + k, -1).get();
    }
    (void)admin.remove(layout.pending(batch.name), -1).get();
    (void)admin.remove(layout.batch(batch.name), -1).get();
    auto events = admin.children(layout.events(), nullptr).get();
    if (events) {
      for (const auto& e : *events) (void)admin.remove(layout.events() + "/" + e, -1).get();
    }
  };

  worker::HandlerRegistry registry;
  worker::registerBuiltins(registry);
  worker::Runner runner(slots);
  worker::ChunkAgent agent(session, layout, w, runner, registry);

  std::atomic<double> feeder_cpu{0};
  std::atomic<int> assigned{0};
  auto t0 = std::chrono::steady_clock::now();
  double cpu0 = cpuMicros(RUSAGE_SELF);
  agent.start();
  std::thread feeder([&] {
    double mine0 = cpuMicros(RUSAGE_THREAD);
    size_t expired = 0;
    for (size_t b = 0; b < batches.size(); ++b) {
      const auto& batch = batches[b];
      tasks::v2::Builder submit(layout);
      submit.submit(batch);
      if (!admin.multi(std::move(submit).finish().ops).get()) std::abort();
      while (expired < b && !server->peek(layout.chunk(w, tasks::makeChunkName(0, expired + 1)))) {
        expire(batches[expired++]);
      }
      while (assigned - static_cast<int>(agent.stats().succeeded) >=
             in_flight_chunks * static_cast<int>(per_chunk)) {
        std::this_thread::sleep_for(100us);
      }
      std::string name = tasks::makeChunkName(0, static_cast<int64_t>(b) + 1);
      auto node = admin.get(layout.pending(batch.name), nullptr).get();
      auto state = *tasks::decodePending(node->data);
      tasks::Chunk chunk;
      for (uint32_t i = 0; i < batch.tasks.size(); ++i) {
        tasks::ChunkItem item;
        item.ref = {batch.name, i};
        item.id = batch.tasks[i].id;
        item.spec = batch.tasks[i];
        chunk.items.push_back(std::move(item));
        state.hold(i, tasks::Held{w, name});
      }
      auto assign = tasks::v2::Builder::fenced(layout, 0);
      assign.assign({tasks::v2::PendingWrite{batch.name, node->stat.version, state}}, w, name,
                    chunk, base::wallMillis());
      if (!admin.multi(std::move(assign).finish().ops).get()) std::abort();
      assigned += static_cast<int>(batch.tasks.size());
    }
    feeder_cpu = cpuMicros(RUSAGE_THREAD) - mine0;
  });
  while (agent.stats().succeeded < static_cast<uint64_t>(total)) std::this_thread::sleep_for(1ms);
  feeder.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double cpu = cpuMicros(RUSAGE_SELF) - cpu0 - feeder_cpu;
  auto stats = agent.stats();
  agent.stop();
  std::printf("tasks %d in chunks of %u, %d slots\n", total, per_chunk, slots);
  std::printf("worker: %.0f tasks/s, %.1f CPU us per task (feeder %.1f us per task excluded)\n",
              total / secs, cpu / total, feeder_cpu / total);
  std::printf("committed %llu, fenced %llu, multis by the worker %zu\n",
              static_cast<unsigned long long>(stats.succeeded),
              static_cast<unsigned long long>(stats.fenced_commits),
              session.callCount(coord::OpKind::kMulti));
  return 0;
}

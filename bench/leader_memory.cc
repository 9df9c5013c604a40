// The protocol-v2 leader's memory per waiting task (docs/PERFORMANCE.md, "Leader memory"): N
// tasks submitted in batches to the in-memory tree, no workers, then the BatchScheduler started
// on a ManualExecutor and run until every task is indexed as waiting. Prints the heap the leader
// added (glibc's mallinfo2, in-use bytes, before the start and once all are indexed) per task,
// and its parts: the decoded batch records alone (decoded here the same way), and the rest (the
// pending states, the JobIndex). A tool run by hand, not a test: the in-memory tree shares the
// heap, so the figure is taken as a difference with nothing else running.
//
//   leader_memory [tasks] [batch size]

#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "leader_tree.h"
#include "scheduler/packed_record.h"

using namespace drover;

namespace {

// In-use heap: the arena's chunks and the blocks over the mmap threshold (a 1,000-task batch's
// vector of specs is one such block).
size_t heapInUse() {
  const auto m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t total = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 200'000;
  const size_t batch_size = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 1000;

  bench::LeaderTree tree;
  const std::vector<std::string> names = tree.submitNoops(total, batch_size);

  // The records alone as the leader keeps them (scheduler/packed_record.h), for the breakdown.
  size_t records_bytes = 0;
  {
    malloc_trim(0);
    size_t before = heapInUse();
    std::vector<scheduler::PackedRecord> records;
    for (const auto& name : names) {
      auto node = tree.admin.get(tree.layout.batch(name), nullptr).get();
      auto record = node ? scheduler::PackedRecord::decode(name, node->data) : std::nullopt;
      if (!record) {
        std::fprintf(stderr, "cannot read %s\n", name.c_str());
        return 1;
      }
      records.push_back(std::move(*record));
    }
    records_bytes = heapInUse() - before;
  }

  base::ManualExecutor exec;
  malloc_trim(0);
  const size_t before = heapInUse();
  auto scheduler = tree.scheduler(exec);
  auto& s = *scheduler;
  s.start();
  auto start = std::chrono::steady_clock::now();
  while (s.snapshot().pending < total) {
    if (exec.runReady() == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    if (std::chrono::steady_clock::now() - start > std::chrono::minutes(5)) {
      std::fprintf(stderr, "indexed %zu of %zu\n", s.snapshot().pending, total);
      return 1;
    }
  }
  while (exec.runReady() != 0) {
  }
  const size_t after = heapInUse();
  s.stop();
  const double per_task = static_cast<double>(after - before) / total;
  const double records = static_cast<double>(records_bytes) / total;
  std::printf("tasks %zu in batches of %zu, all waiting\n", total, batch_size);
  std::printf("leader heap: %.0f bytes per waiting task (%.1f MiB)\n", per_task,
              (after - before) / 1048576.0);
  std::printf("  batch records (specs kept encoded): %.0f bytes per task\n", records);
  std::printf("  the rest (pending states, JobIndex, tracking): %.0f bytes per task\n",
              per_task - records);
  return 0;
}

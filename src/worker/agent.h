#pragma once

// What a node's worker role asks of the agent that runs what the leader assigns to one worker id
// (ChunkAgent, worker/chunk_agent.h, docs/ZNODES.md), with its options and counters.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "base/backoff.h"
#include "base/executor.h"
#include "coord/coordination.h"
#include "tasks/layout.h"
#include "tasks/records.h"
#include "tasks/task.h"
#include "worker/handler.h"
#include "worker/runner.h"

namespace drover::worker {

struct AgentOptions {
  // Delay before a failed task may run again: not_before = wall now + delay(attempt).
  base::Backoff retry_backoff{std::chrono::seconds(1), std::chrono::seconds(60), 2.0, 0.0};
  // Delay before re-trying a coordination call that failed retryably (connection loss, ...).
  base::Backoff zk_backoff{std::chrono::milliseconds(50), std::chrono::seconds(5), 2.0, 0.0};
  // Starts and commits ready at the same moment are combined into one multi of at most this
  // many tasks and about this many bytes (1: one multi per task).
  size_t max_batch = 32;
  size_t max_batch_bytes = 512 * 1024;
  // A task is launched as soon as it has a slot, and its `running` status is written only if it
  // still runs this long after it started: a short task goes from `assigned` straight to its
  // outcome with one write instead of two (its status still carries started_at). 0: write
  // `running` before launching, as a fence (the run starts only once the write landed).
  std::chrono::milliseconds mark_running_after{20};
};

// Counters for metrics and /v1/workers; a consistent snapshot.
struct AgentStats {
  int running = 0;              // runs in progress
  uint64_t succeeded = 0;       // commits that landed, by outcome
  uint64_t retried = 0;         //   failed with attempts left: requeued
  uint64_t failed = 0;          //   failed for good (rejected ones included)
  uint64_t rejected = 0;        // failed without running: unknown type or undecodable assignment
  uint64_t fenced_commits = 0;  // commits refused because the assignment was gone: discarded
  uint64_t dropped = 0;         // assignments taken away before they started
};

// What a node's worker role asks of its agent.
class Agent {
 public:
  virtual ~Agent() = default;
  virtual void start() = 0;
  virtual void stop() = 0;
  virtual bool dead() const = 0;
  virtual AgentStats stats() const = 0;
};

}  // namespace drover::worker

#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "scheduler/routing.h"
#include "tasks/task.h"

namespace drover::scheduler {

// What a picker knows of one live worker.
struct WorkerLoad {
  std::string id;
  int slots = 1;     // how many tasks it runs at once (from its WorkerInfo)
  int assigned = 0;  // assignments it holds now, including ones being written
  std::vector<std::string> labels;
  int prefetch = 0;         // assignments it takes beyond its slots, to queue (from its WorkerInfo)
  WorkerRouting routing{};  // which tasks it may take (docs/ROUTING.md)

  // Assignments it may hold at once: its slots plus its prefetch queue.
  int capacity() const { return slots + prefetch; }
  // Assignments it can take now.
  int freeSlots() const { return capacity() > assigned ? capacity() - assigned : 0; }
  // Slots with nothing to run: a task assigned here starts at once.
  int idleSlots() const { return slots > assigned ? slots - assigned : 0; }
};

// Chooses the worker for a task. Every implementation returns the index (into `workers`) of a
// worker with room (freeSlots() > 0), or nullopt when none has any: a worker is never handed more
// than its capacity (slots + prefetch). Idle slots come first: while any worker has an idle slot
// (idleSlots() > 0), only such workers are picked, so a task never waits in one worker's
// prefetch queue while another worker's slot is free (see preferIdle()). `workers` is sorted by id.
// Not thread-safe (the scheduler calls it from its own thread); implementations may keep state
// between calls (round-robin remembers where it stopped).
class WorkerPicker {
 public:
  virtual ~WorkerPicker() = default;
  virtual std::optional<size_t> pick(const std::vector<WorkerLoad>& workers,
                                     const Route& route) = 0;
  virtual std::string_view name() const = 0;
};

// The seed's strategy: cycles through the workers in id order, starting after the one picked
// last (by id, so joins and departures do not reset it), skipping full ones.
class RoundRobinPicker final : public WorkerPicker {
 public:
  std::optional<size_t> pick(const std::vector<WorkerLoad>& workers, const Route& route) override;
  std::string_view name() const override { return "round-robin"; }

 private:
  std::optional<std::string> last_;
};

// Uniformly random among the workers with a free slot.
class RandomPicker final : public WorkerPicker {
 public:
  explicit RandomPicker(uint64_t seed = std::random_device{}());
  std::optional<size_t> pick(const std::vector<WorkerLoad>& workers, const Route& route) override;
  std::string_view name() const override { return "random"; }

 private:
  std::mt19937_64 rng_;
};

// The default: the worker with the most idle slots (or, when none has one, the most prefetch
// room); ties go to the lowest load ratio (assigned / capacity), then to the lowest id.
class LeastLoadedPicker final : public WorkerPicker {
 public:
  std::optional<size_t> pick(const std::vector<WorkerLoad>& workers, const Route& route) override;
  std::string_view name() const override { return "least-loaded"; }
};

// Whether the pick is restricted to workers with an idle slot: true when at least one has one.
bool preferIdle(const std::vector<WorkerLoad>& workers);

// The refill watermark, applied to a round's loads before any pick: a worker with no idle slot
// whose prefetch queue has room for less than half of it is shown as full for the round (its
// prefetch lowered to what it holds beyond its slots). Its queue is then topped up in one chunk
// once it has worked down to half, not in a small chunk after every commit: each chunk costs the
// leader a watch, the worker a listing and a read. Idle slots are never held back (a task never
// waits while a slot is free), and a task that finds every capable worker full this way counts as
// waiting behind, so lower-priority unstarted work still gives way to it (docs/ZNODES.md).
void holdBackSmallRefills(std::vector<WorkerLoad>& workers);

// "round-robin" | "random" | "least-loaded"; nullptr for any other name.
std::unique_ptr<WorkerPicker> makePicker(std::string_view name);

}  // namespace drover::scheduler

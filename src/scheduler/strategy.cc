#include "scheduler/strategy.h"

#include <algorithm>

namespace drover::scheduler {

bool preferIdle(const std::vector<WorkerLoad>& workers) {
  for (const auto& w : workers) {
    if (w.idleSlots() > 0) return true;
  }
  return false;
}

void holdBackSmallRefills(std::vector<WorkerLoad>& workers) {
  for (auto& w : workers) {
    if (w.idleSlots() > 0 || w.prefetch <= 1) continue;
    if (2 * w.freeSlots() < w.prefetch) w.prefetch = std::max(0, w.assigned - w.slots);
  }
}

namespace {

// The room that counts for this pick: idle slots while any worker has one, else all room.
int roomOf(const WorkerLoad& w, bool idle_only) {
  return idle_only ? w.idleSlots() : w.freeSlots();
}

}  // namespace

std::optional<size_t> RoundRobinPicker::pick(const std::vector<WorkerLoad>& workers,
                                             const Route& /*route*/) {
  if (workers.empty()) return std::nullopt;
  // Start at the first worker whose id comes after the last one picked, wrapping around.
  size_t start = 0;
  if (last_) {
    while (start < workers.size() && workers[start].id <= *last_) ++start;
    if (start == workers.size()) start = 0;
  }
  const bool idle_only = preferIdle(workers);
  for (size_t n = 0; n < workers.size(); ++n) {
    size_t i = (start + n) % workers.size();
    if (roomOf(workers[i], idle_only) > 0) {
      last_ = workers[i].id;
      return i;
    }
  }
  return std::nullopt;
}

RandomPicker::RandomPicker(uint64_t seed) : rng_(seed) {}

std::optional<size_t> RandomPicker::pick(const std::vector<WorkerLoad>& workers,
                                         const Route& /*route*/) {
  std::vector<size_t> free;
  const bool idle_only = preferIdle(workers);
  for (size_t i = 0; i < workers.size(); ++i) {
    if (roomOf(workers[i], idle_only) > 0) free.push_back(i);
  }
  if (free.empty()) return std::nullopt;
  std::uniform_int_distribution<size_t> dist(0, free.size() - 1);
  return free[dist(rng_)];
}

std::optional<size_t> LeastLoadedPicker::pick(const std::vector<WorkerLoad>& workers,
                                              const Route& /*route*/) {
  std::optional<size_t> best;
  const bool idle_only = preferIdle(workers);
  for (size_t i = 0; i < workers.size(); ++i) {
    const WorkerLoad& w = workers[i];
    if (roomOf(w, idle_only) <= 0) continue;
    if (!best) {
      best = i;
      continue;
    }
    const WorkerLoad& b = workers[*best];
    if (roomOf(w, idle_only) != roomOf(b, idle_only)) {
      if (roomOf(w, idle_only) > roomOf(b, idle_only)) best = i;
      continue;
    }
    // Compare assigned/capacity without division: a/s < b/t  <=>  a*t < b*s (capacity > 0).
    int64_t lhs = int64_t{w.assigned} * b.capacity();
    int64_t rhs = int64_t{b.assigned} * w.capacity();
    if (lhs != rhs) {
      if (lhs < rhs) best = i;
      continue;
    }
    if (w.id < b.id) best = i;
  }
  return best;
}

std::unique_ptr<WorkerPicker> makePicker(std::string_view name) {
  if (name == "round-robin") return std::make_unique<RoundRobinPicker>();
  if (name == "random") return std::make_unique<RandomPicker>();
  if (name == "least-loaded") return std::make_unique<LeastLoadedPicker>();
  return nullptr;
}

}  // namespace drover::scheduler

#pragma once

// The leader's copy of a batch record (docs/PERFORMANCE.md "Leader memory"). A leader holding a
// backlog holds every waiting task's record, and a decoded TaskSpec costs ~250 bytes before its
// payload's JSON object (~130 more for a small one). So each spec is kept as its encoded JSON, the
// bytes the record stored it in, with what the leader reads per task beside it (priority, route,
// max_attempts, whether it has a callback or dependencies, a client-chosen id); a spec is decoded
// only when it goes into a chunk or its dependencies are resolved.
//
// Immutable once decoded, and shared: the PendingTracker caches it, JobIndex entries hold it.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "scheduler/routing.h"
#include "tasks/batch.h"
#include "tasks/task.h"

namespace drover::scheduler {

class PackedRecord {
 public:
  // From the batch record znode `name` with `data`; nullopt when the record or any of its specs
  // does not decode (as tasks::decodeBatch).
  static std::optional<PackedRecord> decode(std::string_view name, std::string_view data);
  // The record as the leader would read it back (for tests and tools).
  static PackedRecord pack(const tasks::BatchRecord& record);

  const std::string& name() const { return name_; }
  int64_t submittedAt() const { return submitted_at_; }
  uint32_t size() const { return static_cast<uint32_t>(tasks_.size()); }

  // Per task; each requires index < size().
  int priority(uint32_t index) const { return tasks_[index].priority; }
  int maxAttempts(uint32_t index) const { return tasks_[index].max_attempts; }
  bool hasCallback(uint32_t index) const { return tasks_[index].flags & kCallback; }
  bool hasDependencies(uint32_t index) const { return tasks_[index].flags & kDepends; }
  const Route& route(uint32_t index) const { return routes_[tasks_[index].route]; }
  // The task's id: client-chosen, or generated from its batch and index.
  std::string id(uint32_t index) const;
  bool customId(uint32_t index) const;
  // The size of the spec encoded with its id, as a chunk would carry it inline.
  size_t specBytes(uint32_t index) const;
  // The decoded spec (nullopt only if it no longer decodes, which decode() rules out).
  std::optional<tasks::TaskSpec> spec(uint32_t index) const;

 private:
  enum Flag : uint8_t { kCallback = 1, kDepends = 2 };
  struct Task {
    uint32_t route = 0;  // in routes_
    int16_t priority = 0;
    uint16_t max_attempts = 0;
    uint8_t flags = 0;
  };
  std::string_view encoded(uint32_t index) const;

  std::string name_;
  int64_t submitted_at_ = 0;
  std::vector<Task> tasks_;
  std::vector<Route> routes_;        // the distinct routes, in first-use order
  std::string specs_;                // the encoded specs back to back (generated ids left out)
  std::vector<uint32_t> spec_ends_;  // where each spec ends in specs_
  // Client-chosen ids back to back, and where each task's ends (empty when none is chosen: a
  // task whose range is empty has a generated id).
  std::string ids_;
  std::vector<uint32_t> id_ends_;
};

}  // namespace drover::scheduler

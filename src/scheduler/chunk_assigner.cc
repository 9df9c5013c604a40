#include "scheduler/chunk_assigner.h"

#include <algorithm>
#include <set>
#include <tuple>
#include <utility>

namespace drover::scheduler {

namespace {

// Bytes of an item besides its spec (names, numbers, JSON punctuation), for the chunk cut.
constexpr size_t kItemOverhead = 64;

}  // namespace

Round ChunkAssigner::plan(JobIndex& index, std::vector<WorkerLoad>& workers,
                          const PendingTracker& pending,
                          const std::function<bool(const std::string&, int)>& open,
                          const std::function<std::string()>& name) {
  Round round;
  if (workers.empty()) return round;
  std::set<Route> blocked;
  std::map<Route, std::vector<size_t>> eligible;
  std::map<std::string, int> taken;          // per queue, in this round
  std::map<std::string, size_t> open_chunk;  // worker -> its chunk being filled
  std::vector<WorkerLoad> candidates;
  size_t bytes = 0;
  while (round.tasks < limits_.max_round_tasks && bytes < limits_.max_round_bytes) {
    std::optional<JobIndex::Entry> next = index.nextExcept(blocked);
    if (!next) break;
    const int priority = next->priority();
    Route route = next->route();
    auto [match, fresh] = eligible.try_emplace(route);
    if (fresh) {
      for (size_t i = 0; i < workers.size(); ++i) {
        if (serves(workers[i].routing, route)) match->second.push_back(i);
      }
    }
    if (match->second.empty() || !open(route.queue, taken[route.queue])) {
      blocked.insert(std::move(route));
      continue;
    }
    std::optional<size_t> chosen;
    if (match->second.size() == workers.size()) {
      chosen = picker_.pick(workers, route);  // every worker may take it: no copy
    } else {
      candidates.clear();
      for (size_t i : match->second) candidates.push_back(workers[i]);
      if (auto pick = picker_.pick(candidates, route)) chosen = match->second[*pick];
    }
    if (!chosen) {  // no capable worker has room
      int& behind = round.behind[route];
      behind = std::max(behind, priority);
      blocked.insert(std::move(route));
      continue;
    }
    WorkerLoad& worker = workers[*chosen];
    if (worker.assigned >= worker.slots) {  // to a prefetch queue: it waits there
      auto [b, added] = round.behind.try_emplace(route, priority);
      if (!added) b->second = std::max(b->second, priority);
    }
    ++worker.assigned;
    ++taken[route.queue];

    JobIndex::Entry entry = index.take(next->key());
    const PackedRecord& record = *entry.record;
    std::string id = record.id(entry.index);
    // The spec travels inline when it is small (decoded from the record's copy only now).
    const size_t spec_bytes = record.specBytes(entry.index);
    std::optional<tasks::TaskSpec> spec;
    if (spec_bytes <= tasks::kInlineSpecBytes) spec = record.spec(entry.index);
    size_t item_bytes = kItemOverhead + id.size() + entry.error.size() + (spec ? spec_bytes : 0);
    auto oc = open_chunk.find(worker.id);
    if (oc == open_chunk.end() ||
        round.chunks[oc->second].chunk.items.size() >= tasks::kMaxChunkTasks ||
        round.chunks[oc->second].bytes + item_bytes > tasks::kMaxChunkBytes) {
      round.chunks.push_back(PlannedChunk{worker.id, name(), {}, 0, {}});
      open_chunk[worker.id] = round.chunks.size() - 1;
      oc = open_chunk.find(worker.id);
    }
    PlannedChunk& chunk = round.chunks[oc->second];
    tasks::ChunkItem item;
    item.ref = tasks::TaskRef{entry.batch(), entry.index};
    item.id = std::move(id);
    item.attempt = entry.attempt;
    item.submitted_at = record.submittedAt();
    item.error = entry.error;
    item.spec = std::move(spec);
    chunk.chunk.items.push_back(std::move(item));
    chunk.bytes += item_bytes;
    chunk.entries.push_back(std::move(entry));
    bytes += item_bytes;
    ++round.tasks;
  }
  return round;
}

std::map<std::string, std::map<std::string, std::vector<tasks::TaskRef>>>
ChunkAssigner::reclaimable(const Round& round,
                           const std::map<std::string, WorkerTracker::Worker>& workers,
                           const PendingTracker& pending,
                           const std::function<bool(const std::string&)>& draining) {
  std::map<std::string, std::map<std::string, std::vector<tasks::TaskRef>>> out;
  if (round.behind.empty()) return out;
  for (const auto& [w, worker] : workers) {
    if (!worker.ready() || draining(w)) continue;
    const auto& info = worker.info;
    WorkerRouting routing{info.queues, info.labels, info.types, false};
    int top = -1;
    for (const auto& [route, priority] : round.behind) {
      if (serves(routing, route)) top = std::max(top, priority);
    }
    if (top < 0) continue;
    int held = 0;
    for (const auto& [name, c] : worker.chunks) held += static_cast<int>(c.chunk.items.size());
    int budget = held - info.slots;  // its first `slots` tasks may be running
    if (budget <= 0) continue;
    // (priority, chunk, position): the lowest priority first, the latest assigned first.
    std::vector<std::tuple<int, std::string, size_t, tasks::TaskRef>> unstarted;
    for (const auto& [name, c] : worker.chunks) {
      for (size_t i = 0; i < c.chunk.items.size(); ++i) {
        const auto& item = c.chunk.items[i];
        if (info.running.count(item.id)) continue;
        std::optional<int> priority;
        if (item.spec) {
          priority = item.spec->priority;
        } else if (const PackedRecord* record = pending.record(item.ref.batch);
                   record && item.ref.index < record->size()) {
          priority = record->priority(item.ref.index);
        }
        if (!priority || *priority >= top) continue;
        unstarted.emplace_back(*priority, name, i, item.ref);
      }
    }
    std::sort(unstarted.begin(), unstarted.end(), [](const auto& a, const auto& b) {
      if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) < std::get<0>(b);
      if (std::get<1>(a) != std::get<1>(b)) return std::get<1>(a) > std::get<1>(b);
      return std::get<2>(a) > std::get<2>(b);
    });
    size_t n = std::min(unstarted.size(), static_cast<size_t>(budget));
    for (size_t k = 0; k < n; ++k) {
      out[w][std::get<1>(unstarted[k])].push_back(std::get<3>(unstarted[k]));
    }
  }
  return out;
}

}  // namespace drover::scheduler

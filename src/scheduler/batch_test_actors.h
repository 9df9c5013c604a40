#pragma once

// Test helpers for protocol v2's leader: the API's submit and a worker's commit, played through
// tasks::v2::Builder on any session (the fake tree or a real ZooKeeper). Blocking calls; for
// tests and benches only.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "coord/coordination.h"
#include "coord/paths.h"
#include "tasks/batch.h"
#include "tasks/layout.h"
#include "tasks/protocol.h"

namespace drover::scheduler::testing {

// Submits `specs` as one batch at `submitted_ms` (the batch name's time); ids left empty are
// generated. Creates the time bucket first if missing. Returns the batch name.
inline std::string submitBatch(coord::Coordination& c, const tasks::Layout& layout,
                               std::vector<tasks::TaskSpec> specs, int64_t submitted_ms,
                               uint32_t random, int64_t not_before = 0) {
  tasks::BatchRecord record;
  record.name = tasks::makeBatchName(submitted_ms, random);
  record.submitted_at = submitted_ms;
  for (uint32_t i = 0; i < specs.size(); ++i) {
    if (specs[i].id.empty()) specs[i].id = tasks::generatedId({record.name, i});
  }
  record.tasks = std::move(specs);
  std::string bucket = record.name.substr(0, tasks::Layout::kBatchBucketDigits);
  if (!coord::ensurePath(c, layout.batchBucket(bucket))) return "";
  if (!coord::ensurePath(c, layout.pendingBucket(bucket))) return "";
  tasks::v2::Builder builder(layout);
  builder.submit(record, not_before);
  auto r = c.multi(std::move(builder).finish().ops).get();
  return r ? record.name : "";
}

struct ChunkRead {
  std::string name;
  int32_t version = 0;
  tasks::Chunk chunk;
};

// Worker w's chunks, sorted by name (assignment order).
inline std::vector<ChunkRead> chunksOf(coord::Coordination& c, const tasks::Layout& layout,
                                       const std::string& w) {
  std::vector<ChunkRead> out;
  auto names = c.children(layout.assignmentsOf(w), nullptr).get();
  if (!names) return out;
  std::sort(names->begin(), names->end());
  for (const auto& name : *names) {
    auto node = c.get(layout.chunk(w, name), nullptr).get();
    if (!node) continue;
    auto chunk = tasks::decodeChunk(node->data);
    if (chunk) out.push_back(ChunkRead{name, node->stat.version, std::move(*chunk)});
  }
  return out;
}

// The worker's commit: `refs` of chunk `read` ended in `state` (succeeded unless told).
// Returns the multi's result.
inline coord::Result<std::vector<coord::OpResult>> commit(
    coord::Coordination& c, const tasks::Layout& layout, const std::string& w,
    const ChunkRead& read, const std::vector<tasks::TaskRef>& refs, int64_t now,
    tasks::State state = tasks::State::kSucceeded) {
  std::map<std::string, tasks::ResultRecord> outcomes;
  for (const auto& ref : refs) {
    const tasks::ChunkItem* item = read.chunk.find(ref);
    if (!item) continue;
    tasks::Outcome o;
    o.index = ref.index;
    if (item->id != tasks::generatedId(ref)) o.id = item->id;
    o.state = state;
    o.attempt = item->attempt;
    o.worker = w;
    o.started_at = now;
    o.finished_at = now;
    outcomes[ref.batch].outcomes.push_back(std::move(o));
  }
  tasks::v2::Builder builder(layout);
  builder.commit(tasks::v2::ChunkWrite{w, read.name, read.version, read.chunk.without(refs)},
                 outcomes, {}, {}, now);
  return c.multi(std::move(builder).finish().ops).get();
}

// Every ref of a chunk.
inline std::vector<tasks::TaskRef> refsOf(const tasks::Chunk& chunk) {
  std::vector<tasks::TaskRef> refs;
  for (const auto& item : chunk.items) refs.push_back(item.ref);
  return refs;
}

}  // namespace drover::scheduler::testing

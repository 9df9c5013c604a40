#include "tasks/protocol.h"

#include <algorithm>
#include <utility>

namespace drover::tasks::v2 {

namespace {

// Groups `items` by (batch, attempt) into event lines of one state.
std::vector<EventGroup> groupItems(const std::vector<ChunkItem>& items, State state,
                                   const std::string& worker, int64_t at,
                                   const std::map<TaskRef, int>* attempts = nullptr) {
  std::map<std::pair<std::string, int>, EventGroup> groups;
  for (const auto& item : items) {
    int attempt = item.attempt;
    if (attempts) {
      auto it = attempts->find(item.ref);
      if (it != attempts->end()) attempt = it->second;
    }
    auto& g = groups[{item.ref.batch, attempt}];
    g.batch = item.ref.batch;
    g.state = state;
    g.attempt = attempt;
    g.worker = worker;
    g.at = at;
    g.indices.push_back(item.ref.index);
    if (!item.id.empty() && item.id != generatedId(item.ref)) g.ids[item.ref.index] = item.id;
  }
  std::vector<EventGroup> out;
  for (auto& [key, g] : groups) out.push_back(std::move(g));
  return out;
}

}  // namespace

std::string_view partName(Part part) {
  switch (part) {
    case Part::kEpoch:
      return "epoch";
    case Part::kBatch:
      return "batch record";
    case Part::kPending:
      return "pending state";
    case Part::kChunk:
      return "chunk";
    case Part::kResult:
      return "result record";
    case Part::kId:
      return "id entry";
    case Part::kEvent:
      return "event record";
    case Part::kRetained:
      return "retained batch";
    case Part::kWaiting:
      return "waiting count";
  }
  return "?";
}

std::optional<Role> Decoder::failed(const coord::Error& error) const {
  int k = error.failedOp();
  if (k < 0 || static_cast<size_t>(k) >= roles_.size()) return std::nullopt;
  return roles_[k];
}

const coord::OpResult* Decoder::result(const std::vector<coord::OpResult>& results, Part part,
                                       std::string_view key) const {
  for (size_t k = 0; k < roles_.size() && k < results.size(); ++k) {
    if (roles_[k].part == part && roles_[k].key == key) return &results[k];
  }
  return nullptr;
}

Builder::Builder(const Layout& layout) : layout_(&layout) {}

Builder Builder::fenced(const Layout& layout, int32_t epoch) {
  Builder b(layout);
  b.push(coord::CheckOp{layout.epoch(), epoch}, Part::kEpoch, "");
  return b;
}

void Builder::push(coord::Op op, Part part, std::string key) {
  bytes_ += coord::opBytes(op);
  ops_.push_back(std::move(op));
  decoder_.roles_.push_back(Role{part, std::move(key)});
}

void Builder::report(EventGroup group) {
  if (!group.indices.empty()) events_.push_back(std::move(group));
}

void Builder::writePending(const PendingWrite& w) {
  if (w.create) {
    push(
        coord::CreateOp{
            layout_->pending(w.batch), encode(w.after), coord::CreateMode::kPersistent, {}},
        Part::kPending, w.batch);
    return;
  }
  push(coord::SetOp{layout_->pending(w.batch), encode(w.after), w.version}, Part::kPending,
       w.batch);
}

void Builder::writeChunk(const ChunkWrite& w) {
  std::string path = layout_->chunk(w.worker, w.name);
  if (w.remaining.items.empty()) {
    push(coord::DeleteOp{path, w.version}, Part::kChunk, path);
  } else {
    push(coord::SetOp{path, encode(w.remaining), w.version}, Part::kChunk, path);
  }
}

void Builder::recordOutcomes(const std::string& batch, const ResultRecord& record, int64_t now) {
  if (record.outcomes.empty()) return;
  push(coord::CreateOp{layout_->batch(batch) + "/" + resultPrefix(record),
                       encode(record),
                       coord::CreateMode::kPersistentSequential,
                       {}},
       Part::kResult, batch);
  std::map<std::tuple<State, int, std::string>, EventGroup> groups;
  for (const auto& o : record.outcomes) {
    // A pending outcome is history (the attempt that ended, or a re-open): the event of the
    // task waiting again is reported by the transition, with the attempt it will run as.
    if (o.state == State::kPending) continue;
    auto& g = groups[{o.state, o.attempt, o.worker}];
    g.batch = batch;
    g.state = o.state;
    g.attempt = o.attempt;
    g.worker = o.worker;
    g.at = o.finished_at != 0 ? o.finished_at : now;
    g.indices.push_back(o.index);
    if (!o.id.empty()) g.ids[o.index] = o.id;
  }
  for (auto& [key, g] : groups) report(std::move(g));
}

void Builder::reportPending(const std::vector<ChunkItem>& items,
                            const std::vector<PendingWrite>& back, int64_t now) {
  std::map<TaskRef, int> attempts;
  for (const auto& w : back) {
    for (const auto& [index, waiting] : w.after.waiting()) {
      attempts[TaskRef{w.batch, index}] = waiting.attempt;
    }
  }
  for (auto& g : groupItems(items, State::kPending, "", now, &attempts)) report(std::move(g));
}

void Builder::submit(const BatchRecord& batch, int64_t not_before) {
  push(
      coord::CreateOp{
          layout_->batch(batch.name), encode(batch), coord::CreateMode::kPersistent, {}},
      Part::kBatch, batch.name);
  PendingState pending;
  for (uint32_t i = 0; i < batch.tasks.size(); ++i) {
    // A delayed task waits for its own time (its spec's run_at), or the batch's if later.
    pending.wait(i, Waiting{1, std::max(not_before, batch.tasks[i].run_at), ""});
  }
  push(
      coord::CreateOp{
          layout_->pending(batch.name), encode(pending), coord::CreateMode::kPersistent, {}},
      Part::kPending, batch.name);
  EventGroup group{batch.name, {}, {}, State::kPending, 0, "", batch.submitted_at};
  for (uint32_t i = 0; i < batch.tasks.size(); ++i) {
    const std::string& id = batch.tasks[i].id;
    group.indices.push_back(i);
    if (id == generatedId({batch.name, i})) continue;
    group.ids[i] = id;
    push(coord::CreateOp{layout_->idEntry(id),
                         encode(TaskRef{batch.name, i}),
                         coord::CreateMode::kPersistent,
                         {}},
         Part::kId, id);
  }
  report(std::move(group));
}

void Builder::takeFrom(const PendingWrite& write) { writePending(write); }

void Builder::assign(const std::vector<PendingWrite>& taken, const std::string& worker,
                     const std::string& chunk_name, const Chunk& chunk, int64_t now) {
  for (const auto& w : taken) writePending(w);
  std::string path = layout_->chunk(worker, chunk_name);
  push(coord::CreateOp{path, encode(chunk), coord::CreateMode::kPersistent, {}}, Part::kChunk,
       path);
  for (auto& g : groupItems(chunk.items, State::kAssigned, worker, now)) report(std::move(g));
}

void Builder::commit(const ChunkWrite& chunk, const std::map<std::string, ResultRecord>& outcomes,
                     const std::vector<PendingWrite>& retries,
                     const std::vector<ChunkItem>& retried, int64_t now) {
  writeChunk(chunk);
  for (const auto& [batch, record] : outcomes) recordOutcomes(batch, record, now);
  for (const auto& w : retries) writePending(w);
  reportPending(retried, retries, now);
}

void Builder::requeue(const ChunkWrite& chunk, const std::vector<PendingWrite>& back,
                      const std::vector<ChunkItem>& moved,
                      const std::map<std::string, ResultRecord>& failed, int64_t now) {
  writeChunk(chunk);
  for (const auto& w : back) writePending(w);
  for (const auto& [batch, record] : failed) recordOutcomes(batch, record, now);
  reportPending(moved, back, now);
}

void Builder::reclaim(const ChunkWrite& chunk, const std::vector<ChunkItem>& taken,
                      const std::vector<PendingWrite>& back, int64_t now) {
  writeChunk(chunk);
  for (const auto& w : back) writePending(w);
  reportPending(taken, back, now);
}

void Builder::cancel(const ChunkItem& task, const PendingWrite& pending,
                     const std::optional<ChunkWrite>& holder, const Outcome& cancelled) {
  if (holder) writeChunk(*holder);
  writePending(pending);
  ResultRecord record;
  record.outcomes.push_back(cancelled);
  if (record.outcomes.back().id.empty() && task.id != generatedId(task.ref)) {
    record.outcomes.back().id = task.id;
  }
  recordOutcomes(task.ref.batch, record, cancelled.finished_at);
}

void Builder::retry(const PendingWrite& pending, const Outcome& reopened, const std::string& id,
                    int64_t now) {
  writePending(pending);
  ResultRecord record;
  record.outcomes.push_back(reopened);
  record.outcomes.back().state = State::kPending;
  recordOutcomes(pending.batch, record, now);
  const Waiting* w = pending.after.waitingAt(reopened.index);
  EventGroup group{pending.batch,
                   {reopened.index},
                   {},
                   State::kPending,
                   w ? w->attempt : reopened.attempt + 1,
                   "",
                   now};
  if (!id.empty() && id != generatedId({pending.batch, reopened.index})) {
    group.ids[reopened.index] = id;
  }
  report(std::move(group));
}

void Builder::cancelWaiting(const PendingWrite& pending, const ResultRecord& cancelled,
                            int64_t now) {
  writePending(pending);
  recordOutcomes(pending.batch, cancelled, now);
}

void Builder::expire(const std::string& batch, const std::vector<std::string>& result_children,
                     std::optional<int32_t> pending_version,
                     const std::vector<std::string>& client_ids) {
  for (const auto& child : result_children) {
    push(coord::DeleteOp{layout_->batch(batch) + "/" + child, coord::kAnyVersion}, Part::kRetained,
         batch);
  }
  if (pending_version) {
    push(coord::DeleteOp{layout_->pending(batch), *pending_version}, Part::kRetained, batch);
  }
  for (const auto& id : client_ids) {
    push(coord::DeleteOp{layout_->idEntry(id), coord::kAnyVersion}, Part::kRetained, batch);
  }
  // Last: fails with NotEmpty when a result record was added since the listing (it cannot be:
  // nothing of the batch waits or runs), so the batch is read again rather than half deleted.
  push(coord::DeleteOp{layout_->batch(batch), coord::kAnyVersion}, Part::kRetained, batch);
}

void Builder::sweep(const PendingWrite& write) {
  if (write.after.empty()) {
    push(coord::DeleteOp{layout_->pending(write.batch), write.version}, Part::kPending,
         write.batch);
  } else {
    writePending(write);
  }
}

void Builder::dropBucket(const std::string& bucket, bool pending) {
  push(coord::DeleteOp{pending ? layout_->pendingBucket(bucket) : layout_->batchBucket(bucket),
                       coord::kAnyVersion},
       Part::kRetained, bucket);
}

void Builder::publishWaiting(const WaitingCount& count) {
  push(coord::SetOp{layout_->pendingRoot(), encode(count), coord::kAnyVersion}, Part::kWaiting, "");
}

coord::CreateOp eventGroupsOp(const Layout& layout, const std::vector<EventGroup>& groups,
                              bool may_call_back) {
  Json arr = Json::array();
  for (const auto& g : groups) arr.push_back(toJson(g));
  return coord::CreateOp{layout.events() + (may_call_back ? "/e-" : "/n-"),
                         arr.dump(),
                         coord::CreateMode::kPersistentSequential,
                         {}};
}

bool mayHoldCallbacks(std::string_view record_name) { return record_name.substr(0, 2) != "n-"; }

void Builder::callbacks(bool any) { callbacks_ = callbacks_.value_or(false) || any; }

Multi Builder::finish() && {
  const bool terminal = std::any_of(events_.begin(), events_.end(),
                                    [](const EventGroup& g) { return isTerminal(g.state); });
  if (!events_.empty()) {
    push(eventGroupsOp(*layout_, events_, terminal && callbacks_.value_or(true)), Part::kEvent, "");
  }
  return Multi{std::move(ops_), std::move(decoder_)};
}

}  // namespace drover::tasks::v2

#include "tasks/inspect.h"

#include <algorithm>
#include <utility>

#include "coord/paths.h"
#include "tasks/batch.h"

namespace drover::tasks::inspect {

namespace {

using Names = std::vector<std::string>;

// Requests in flight at once. Bounded: the ZooKeeper client sends no ping while requests are
// outstanding and the server counts a session alive only when a request arrives, so a million
// reads sent at once expired the reader's session while it was still taking in the replies
// (docs/PERFORMANCE.md "The 1,000,000-task backlog").
constexpr size_t kWindow = 1000;

// Calls `send(i)` for each i in [0, n), at most kWindow outstanding, and `take(i, result)` in
// order; false as soon as `take` does.
template <typename Send, typename Take>
bool windowed(size_t n, Send&& send, Take&& take) {
  for (size_t begin = 0; begin < n; begin += kWindow) {
    const size_t end = std::min(n, begin + kWindow);
    std::vector<decltype(send(size_t{0}))> fs;
    fs.reserve(end - begin);
    for (size_t i = begin; i < end; ++i) fs.push_back(send(i));
    for (size_t i = begin; i < end; ++i) {
      if (!take(fs[i - begin].get())) return false;
    }
  }
  return true;
}

// Children of each of `parents`, pipelined; nullopt if a listing failed (a parent gone since
// it was named counts as empty).
std::optional<std::vector<Names>> listAll(coord::Coordination& c, const Names& parents) {
  std::vector<Names> out;
  out.reserve(parents.size());
  bool ok = windowed(
      parents.size(), [&](size_t i) { return c.children(parents[i], nullptr); },
      [&](const coord::Result<Names>& r) {
        if (!r && r.error().code() != coord::Code::kNoNode) return false;
        out.push_back(r ? *r : Names{});
        return true;
      });
  if (!ok) return std::nullopt;
  return out;
}

// Data of each of `paths`, pipelined; a missing node is nullopt in its slot.
std::optional<std::vector<std::optional<std::string>>> readAll(coord::Coordination& c,
                                                               const Names& paths) {
  std::vector<std::optional<std::string>> out;
  out.reserve(paths.size());
  bool ok = windowed(
      paths.size(), [&](size_t i) { return c.get(paths[i], nullptr); },
      [&](const coord::Result<coord::Node>& r) {
        if (!r && r.error().code() != coord::Code::kNoNode) return false;
        out.push_back(r ? std::optional(r->data) : std::nullopt);
        return true;
      });
  if (!ok) return std::nullopt;
  return out;
}

}  // namespace

std::optional<std::map<std::string, TaskStatus>> outcomes(coord::Coordination& c,
                                                          const Layout& layout,
                                                          const std::vector<std::string>& ids) {
  std::map<std::string, std::map<uint32_t, std::string>> wanted;  // batch -> index -> id
  Names client_ids, entries;
  for (const auto& id : ids) {
    if (auto ref = parseGeneratedId(id)) {
      wanted[ref->batch][ref->index] = id;
    } else {
      client_ids.push_back(id);
      entries.push_back(layout.idEntry(id));
    }
  }
  auto refs = readAll(c, entries);
  if (!refs) return std::nullopt;
  for (size_t i = 0; i < client_ids.size(); ++i) {
    if (!(*refs)[i]) continue;  // never submitted (or expired)
    if (auto ref = decodeRef(*(*refs)[i])) wanted[ref->batch][ref->index] = client_ids[i];
  }
  Names batches, parents;
  for (const auto& [batch, _] : wanted) {
    batches.push_back(batch);
    parents.push_back(layout.batch(batch));
  }
  auto children = listAll(c, parents);
  if (!children) return std::nullopt;
  Names paths;
  std::vector<std::pair<const std::string*, int64_t>> owner;  // batch, record sequence
  for (size_t b = 0; b < batches.size(); ++b) {
    for (const auto& name : (*children)[b]) {
      paths.push_back(parents[b] + "/" + name);
      owner.emplace_back(&batches[b], coord::sequenceOf(name));
    }
  }
  auto records = readAll(c, paths);
  if (!records) return std::nullopt;
  std::map<std::string, std::pair<int64_t, TaskStatus>> latest;  // id -> (sequence, status)
  for (size_t i = 0; i < paths.size(); ++i) {
    if (!(*records)[i]) continue;
    auto record = decodeResults(*(*records)[i]);
    if (!record) continue;
    const std::string& batch = *owner[i].first;
    const auto& want = wanted[batch];
    for (const auto& o : record->outcomes) {
      auto it = want.find(o.index);
      if (it == want.end()) continue;
      auto& slot = latest[it->second];
      if (slot.second.attempts != 0 && slot.first > owner[i].second) continue;
      TaskStatus st;
      st.spec.id = it->second;
      st.state = o.state;
      st.attempts = o.attempt;
      st.worker = o.worker;
      st.error = o.error;
      st.result = o.result;
      st.submitted_at = batchTime(batch);
      st.started_at = o.started_at;
      st.finished_at = o.finished_at;
      slot = {owner[i].second, std::move(st)};
    }
  }
  std::map<std::string, TaskStatus> out;
  for (auto& [id, v] : latest) {
    // A latest outcome `pending` is an attempt's end before another one (history): the task
    // waits or runs again, so it has no outcome yet.
    if (v.second.state != State::kPending) out.emplace(id, std::move(v.second));
  }
  return out;
}

std::optional<std::vector<std::string>> unfinished(coord::Coordination& c, const Layout& layout) {
  auto tops = listAll(c, {layout.pendingRoot(), layout.assignments()});
  if (!tops) return std::nullopt;
  const Names& buckets = (*tops)[0];
  const Names& workers = (*tops)[1];
  Names parents;
  for (const auto& b : buckets) parents.push_back(layout.pendingBucket(b));
  for (const auto& w : workers) parents.push_back(layout.assignmentsOf(w));
  auto lists = listAll(c, parents);
  if (!lists) return std::nullopt;
  Names pending, chunks;
  for (size_t i = 0; i < parents.size(); ++i) {
    for (const auto& name : (*lists)[i]) {
      if (i < buckets.size()) {
        pending.push_back(name);
      } else {
        chunks.push_back(layout.chunk(workers[i - buckets.size()], name));
      }
    }
  }
  Names paths;
  for (const auto& batch : pending) paths.push_back(layout.pending(batch));
  for (const auto& chunk : chunks) paths.push_back(chunk);
  auto data = readAll(c, paths);
  if (!data) return std::nullopt;
  std::vector<std::string> out;
  Names named_batches;  // batches with waiting tasks: their record names client ids
  std::vector<std::vector<uint32_t>> waiting_of;
  for (size_t i = 0; i < paths.size(); ++i) {
    if (!(*data)[i]) continue;  // gone since the listing: nothing left in it
    if (i < pending.size()) {
      auto state = decodePending(*(*data)[i]);
      if (!state) return std::nullopt;
      if (state->waiting().empty()) continue;
      named_batches.push_back(pending[i]);
      waiting_of.emplace_back();
      for (const auto& [index, _] : state->waiting()) waiting_of.back().push_back(index);
    } else {
      auto chunk = decodeChunk(*(*data)[i]);
      if (!chunk) return std::nullopt;
      for (const auto& item : chunk->items) {
        out.push_back(item.id.empty() ? generatedId(item.ref) : item.id);
      }
    }
  }
  Names record_paths;
  for (const auto& batch : named_batches) record_paths.push_back(layout.batch(batch));
  auto records = readAll(c, record_paths);
  if (!records) return std::nullopt;
  for (size_t b = 0; b < named_batches.size(); ++b) {
    std::optional<BatchRecord> record;
    if ((*records)[b]) record = decodeBatch(named_batches[b], *(*records)[b]);
    for (uint32_t index : waiting_of[b]) {
      const std::string* client =
          record && index < record->tasks.size() && !record->tasks[index].id.empty()
              ? &record->tasks[index].id
              : nullptr;
      out.push_back(client ? *client : generatedId({named_batches[b], index}));
    }
  }
  return out;
}

}  // namespace drover::tasks::inspect

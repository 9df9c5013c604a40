#include "jepsen/tree_dump.h"

#include <fmt/format.h>

#include <algorithm>
#include <csignal>
#include <optional>
#include <set>

#include "coord/paths.h"
#include "tasks/batch.h"

namespace drover::jepsen {

using namespace std::chrono_literals;

namespace {

using Names = std::vector<std::string>;

template <class T>
tl::expected<T, std::string> await(const coord::Future<T>& f, const std::string& what) {
  auto r = f.waitFor(30s);
  if (!r) return tl::unexpected(what + ": no answer within 30 s");
  if (!*r) return tl::unexpected(what + ": " + r->error().toString());
  if constexpr (std::is_void_v<T>) {
    return {};
  } else {
    return **r;
  }
}

// Children of many folders, pipelined; a folder that does not exist has none.
tl::expected<std::vector<Names>, std::string> childrenOf(coord::Coordination& c,
                                                         const Names& paths) {
  std::vector<coord::Future<Names>> fs;
  for (const auto& p : paths) fs.push_back(c.children(p, nullptr));
  std::vector<Names> out;
  for (size_t i = 0; i < fs.size(); ++i) {
    auto r = fs[i].waitFor(30s);
    if (!r) return tl::unexpected("list " + paths[i] + ": no answer within 30 s");
    if (!*r) {
      if (r->error().code() == coord::Code::kNoNode) {
        out.emplace_back();
        continue;
      }
      return tl::unexpected("list " + paths[i] + ": " + r->error().toString());
    }
    out.push_back(**r);
  }
  return out;
}

// Data of many nodes, pipelined; a node gone since it was listed is nullopt (a record deleted by
// a commit or the sweep between the listing and the read).
tl::expected<std::vector<std::optional<std::string>>, std::string> dataOf(coord::Coordination& c,
                                                                          const Names& paths) {
  std::vector<coord::Future<coord::Node>> fs;
  for (const auto& p : paths) fs.push_back(c.get(p, nullptr));
  std::vector<std::optional<std::string>> out;
  for (size_t i = 0; i < fs.size(); ++i) {
    auto r = fs[i].waitFor(30s);
    if (!r) return tl::unexpected("get " + paths[i] + ": no answer within 30 s");
    if (!*r) {
      if (r->error().code() == coord::Code::kNoNode) {
        out.emplace_back();
        continue;
      }
      return tl::unexpected("get " + paths[i] + ": " + r->error().toString());
    }
    out.push_back((*r)->data);
  }
  return out;
}

std::string timeBucket(std::string_view batch) {
  return std::string(batch.substr(0, tasks::Layout::kBatchBucketDigits));
}

// The tokens of protocol v2 (docs/ZNODES.md "The token rule, per batch"): tasks waiting in a
// batch's pending state, and tasks listed in a worker's chunk. A held pointer in a pending state
// is not a token (the chunk is), so it is not counted.
struct Tokens {
  std::vector<tasks::TaskRef> waiting;
  std::map<std::string, std::vector<std::string>> held;  // worker -> task ids in its chunks
  std::map<std::string, int> bucket_sizes;               // /pending/{t} -> batches
};

tl::expected<Tokens, std::string> readTokens(coord::Coordination& c, const tasks::Layout& l) {
  auto tops = childrenOf(c, {l.pendingRoot(), l.assignments()});
  if (!tops) return tl::unexpected(tops.error());
  const Names& buckets = (*tops)[0];
  const Names& workers = (*tops)[1];
  Names parents;
  for (const auto& t : buckets) parents.push_back(l.pendingBucket(t));
  for (const auto& w : workers) parents.push_back(l.assignmentsOf(w));
  auto lists = childrenOf(c, parents);
  if (!lists) return tl::unexpected(lists.error());
  Tokens out;
  Names paths, pending;
  std::vector<const std::string*> chunk_owner;
  for (size_t i = 0; i < parents.size(); ++i) {
    if (i < buckets.size()) {
      out.bucket_sizes[parents[i]] = static_cast<int>((*lists)[i].size());
      for (const auto& batch : (*lists)[i]) {
        pending.push_back(batch);
        paths.push_back(l.pending(batch));
      }
    } else {
      out.held[workers[i - buckets.size()]];  // a worker folder without chunks is listed too
    }
  }
  for (size_t i = buckets.size(); i < parents.size(); ++i) {
    for (const auto& chunk : (*lists)[i]) {
      paths.push_back(l.chunk(workers[i - buckets.size()], chunk));
      chunk_owner.push_back(&workers[i - buckets.size()]);
    }
  }
  auto data = dataOf(c, paths);
  if (!data) return tl::unexpected(data.error());
  for (size_t i = 0; i < paths.size(); ++i) {
    if (!(*data)[i]) continue;  // gone since the listing: it holds nothing any more
    if (i < pending.size()) {
      auto state = tasks::decodePending(*(*data)[i]);
      if (!state) return tl::unexpected("undecodable pending state " + paths[i]);
      for (const auto& [index, _] : state->waiting()) out.waiting.push_back({pending[i], index});
    } else {
      auto chunk = tasks::decodeChunk(*(*data)[i]);
      if (!chunk) return tl::unexpected("undecodable chunk " + paths[i]);
      auto& ids = out.held[*chunk_owner[i - pending.size()]];
      for (const auto& item : chunk->items) {
        ids.push_back(item.id.empty() ? tasks::generatedId(item.ref) : item.id);
      }
    }
  }
  return out;
}

// One batch as found under /batches: its record and its result records in sequence order.
struct BatchView {
  std::string name;
  std::optional<tasks::BatchRecord> record;  // nullopt: gone or undecodable
  std::vector<tasks::ResultRecord> results;
};

tl::expected<std::vector<BatchView>, std::string> readBatches(
    coord::Coordination& c, const tasks::Layout& l, std::map<std::string, int>& bucket_sizes) {
  auto buckets = childrenOf(c, {l.batches()});
  if (!buckets) return tl::unexpected(buckets.error());
  Names bucket_paths;
  for (const auto& t : buckets->front()) bucket_paths.push_back(l.batchBucket(t));
  auto names = childrenOf(c, bucket_paths);
  if (!names) return tl::unexpected(names.error());
  std::vector<BatchView> out;
  Names batch_paths;
  for (size_t b = 0; b < bucket_paths.size(); ++b) {
    bucket_sizes[bucket_paths[b]] = static_cast<int>((*names)[b].size());
    for (const auto& n : (*names)[b]) {
      out.push_back({n, std::nullopt, {}});
      batch_paths.push_back(l.batch(n));
    }
  }
  auto records = dataOf(c, batch_paths);
  if (!records) return tl::unexpected(records.error());
  auto children = childrenOf(c, batch_paths);
  if (!children) return tl::unexpected(children.error());
  Names result_paths;
  std::vector<size_t> result_owner;
  for (size_t i = 0; i < out.size(); ++i) {
    if ((*records)[i]) out[i].record = tasks::decodeBatch(out[i].name, *(*records)[i]);
    for (const auto& r : tasks::resultsInOrder((*children)[i])) {
      result_paths.push_back(batch_paths[i] + "/" + r);
      result_owner.push_back(i);
    }
  }
  auto results = dataOf(c, result_paths);
  if (!results) return tl::unexpected(results.error());
  for (size_t k = 0; k < result_paths.size(); ++k) {
    if (!(*results)[k]) continue;
    auto record = tasks::decodeResults(*(*results)[k]);
    if (!record) return tl::unexpected("undecodable result record " + result_paths[k]);
    out[result_owner[k]].results.push_back(std::move(*record));
  }
  return out;
}

// A task's id as the clients know it: the client-chosen one from the batch record, else the
// generated "{batch}.{index}".
std::string idOf(const BatchView* view, const tasks::TaskRef& ref) {
  if (view && view->record && ref.index < view->record->tasks.size()) {
    return view->record->tasks[ref.index].id;
  }
  return tasks::generatedId(ref);
}

// Every task of the batch as a StatusEntry: the latest outcome decides its state (pending when
// it has none yet, or when the latest is an attempt's end before another), the history lists
// every outcome recorded, in record order.
void addStatuses(const BatchView& v, std::vector<StatusEntry>& out) {
  std::string place = timeBucket(v.name) + "/" + v.name;
  std::map<uint32_t, std::vector<const tasks::Outcome*>> by_index;
  for (const auto& r : v.results) {
    for (const auto& o : r.outcomes) by_index[o.index].push_back(&o);
  }
  size_t n = v.record ? v.record->tasks.size() : 0;
  for (size_t i = 0; i < n; ++i) by_index[static_cast<uint32_t>(i)];
  for (const auto& [index, outcomes] : by_index) {
    StatusEntry e{place, idOf(&v, {v.name, index}), std::nullopt};
    if (index >= n) {
      // No spec to judge it by (the batch record is gone or does not list the index).
      if (!outcomes.empty() && !outcomes.front()->id.empty()) e.id = outcomes.front()->id;
      out.push_back(std::move(e));
      continue;
    }
    tasks::TaskStatus st;
    st.spec = v.record->tasks[index];
    st.submitted_at = v.record->submitted_at;
    for (const tasks::Outcome* o : outcomes) {
      st.history.push_back(
          {o->attempt, o->worker, o->started_at, o->finished_at, o->state, o->error});
      st.state = o->state;
      st.attempts = o->attempt;
      st.worker = o->worker;
      st.error = o->error;
      st.result = o->result;
      st.started_at = o->started_at;
      st.finished_at = o->finished_at;
    }
    e.status = std::move(st);
    out.push_back(std::move(e));
  }
}

// The feed's two shapes (api/event_feed.cc): protocol v2 writes EventGroups, one per batch and
// state, with the tasks as index ranges; the first protocol wrote one TaskEvent per task.
std::vector<tasks::TaskEvent> decodeEvents(const std::string& data) {
  std::vector<tasks::TaskEvent> out;
  auto j = tasks::parseJson(data);
  if (!j || !j->is_array()) return out;
  for (const auto& item : *j) {
    if (item.is_object() && item.contains("b")) {
      if (auto g = tasks::eventGroupFromJson(item)) {
        for (auto& e : g->expand()) out.push_back(std::move(e));
      }
    } else if (auto e = tasks::eventFromJson(item)) {
      out.push_back(*e);
    }
  }
  return out;
}

}  // namespace

tl::expected<int64_t, std::string> countTokens(coord::Coordination& c, const tasks::Layout& l) {
  auto tokens = readTokens(c, l);
  if (!tokens) return tl::unexpected(tokens.error());
  auto n = static_cast<int64_t>(tokens->waiting.size());
  for (const auto& [_, ids] : tokens->held) n += static_cast<int64_t>(ids.size());
  return n;
}

tl::expected<bool, std::string> settled(coord::Coordination& c, const tasks::Layout& l, int nodes) {
  auto kids = childrenOf(c, {l.workers(), l.election(), l.events()});
  if (!kids) return tl::unexpected(kids.error());
  return static_cast<int>((*kids)[0].size()) == nodes &&
         static_cast<int>((*kids)[1].size()) == nodes && (*kids)[2].size() <= 1000;
}

tl::expected<Tree, std::string> dumpTree(coord::Coordination& c, const tasks::Layout& l) {
  Tree t;
  t.protocol = 2;
  if (auto s = await(c.sync(l.root()), "sync"); !s) return tl::unexpected(s.error());

  auto batches = readBatches(c, l, t.bucket_sizes);
  if (!batches) return tl::unexpected(batches.error());
  std::map<std::string, const BatchView*> by_name;
  for (const auto& v : *batches) {
    by_name[v.name] = &v;
    addStatuses(v, t.statuses);
  }

  auto tokens = readTokens(c, l);
  if (!tokens) return tl::unexpected(tokens.error());
  for (const auto& ref : tokens->waiting) {
    auto it = by_name.find(ref.batch);
    t.jobs.push_back({timeBucket(ref.batch) + "/" + ref.batch,
                      idOf(it == by_name.end() ? nullptr : it->second, ref)});
  }
  t.assignments = tokens->held;
  for (const auto& [path, n] : tokens->bucket_sizes) t.bucket_sizes[path] = n;

  auto top = childrenOf(c, {l.workers(), l.election(), l.events()});
  if (!top) return tl::unexpected(top.error());
  for (const auto& w : (*top)[0]) {
    auto node = await(c.get(l.worker(w), nullptr), "get worker " + w);
    if (!node) continue;  // it left meanwhile
    auto j = tasks::parseJson(node->data);
    auto info = j ? tasks::workerFromJson(*j) : std::nullopt;
    if (!info) {
      info.emplace();
      info->id = w;
    }
    t.workers[w] = *info;
  }
  t.election = (*top)[1];

  Names names = (*top)[2];
  // "e-" and "n-" records share one zero-padded sequence: order by it, not by the name.
  std::sort(names.begin(), names.end(), coord::bySequence);
  Names paths;
  for (const auto& n : names) paths.push_back(l.events() + "/" + n);
  auto events = dataOf(c, paths);
  if (!events) return tl::unexpected(events.error());
  for (size_t i = 0; i < names.size(); ++i) {
    if (!(*events)[i]) continue;  // trimmed meanwhile
    EventRecord rec;
    rec.seq = std::stoll(names[i].substr(names[i].find('-') + 1));
    rec.events = decodeEvents(*(*events)[i]);
    t.events.push_back(std::move(rec));
  }

  auto epoch = await(c.exists(l.epoch(), nullptr), "exists epoch");
  if (epoch && *epoch) t.epoch = (*epoch)->version;
  return t;
}

namespace {

// The place of a client-chosen id: its /ids entry.
tl::expected<tasks::TaskRef, std::string> refOf(coord::Coordination& c, const tasks::Layout& l,
                                                const std::string& id) {
  auto entry = await(c.get(l.idEntry(id), nullptr), "get " + l.idEntry(id));
  if (!entry) return tl::unexpected(entry.error());
  auto ref = tasks::decodeRef(entry->data);
  if (!ref) return tl::unexpected("undecodable " + l.idEntry(id));
  return *ref;
}

// The result records of `batch` that hold an outcome of `index` (names and records, in order).
tl::expected<std::vector<std::pair<std::string, tasks::ResultRecord>>, std::string> recordsOf(
    coord::Coordination& c, const tasks::Layout& l, const tasks::TaskRef& ref) {
  auto kids = childrenOf(c, {l.batch(ref.batch)});
  if (!kids) return tl::unexpected(kids.error());
  Names paths;
  for (const auto& r : tasks::resultsInOrder(kids->front())) {
    paths.push_back(l.batch(ref.batch) + "/" + r);
  }
  auto data = dataOf(c, paths);
  if (!data) return tl::unexpected(data.error());
  std::vector<std::pair<std::string, tasks::ResultRecord>> out;
  for (size_t i = 0; i < paths.size(); ++i) {
    auto record = (*data)[i] ? tasks::decodeResults(*(*data)[i]) : std::nullopt;
    if (record && record->find(ref.index)) out.emplace_back(paths[i], std::move(*record));
  }
  return out;
}

std::string plantLost(coord::Coordination& c, const tasks::Layout& l, const std::string& id,
                      const tasks::TaskRef& ref) {
  auto records = recordsOf(c, l, ref);
  if (!records) return "lost: " + records.error();
  if (records->empty()) return "lost: no outcome of " + id + " recorded";
  // Its whole history goes: with a `pending` outcome left, it would only look unfinished.
  std::string deleted;
  size_t tasks_gone = 0;
  for (const auto& [path, record] : *records) {
    auto st = await(c.remove(path, coord::kAnyVersion), "delete " + path);
    if (!st) return "lost: " + st.error();
    deleted += " " + path;
    tasks_gone += record.outcomes.size();
  }
  return fmt::format(
      "lost: deleted{} ({} outcomes, among them those of acknowledged task {} at index {})",
      deleted, tasks_gone, id, ref.index);
}

std::string plantPhantom(coord::Coordination& c, const tasks::Layout& l, const std::string& id,
                         const tasks::TaskRef& ref) {
  auto data = await(c.get(l.batch(ref.batch), nullptr), "get batch");
  if (!data) return "phantom: " + data.error();
  auto batch = tasks::decodeBatch(ref.batch, data->data);
  if (!batch || ref.index >= batch->tasks.size()) return "phantom: undecodable batch record";
  auto records = recordsOf(c, l, ref);
  if (!records) return "phantom: " + records.error();
  if (records->empty()) return "phantom: no outcome of " + id + " to copy";
  // A batch of its own in the same time bucket, holding a copy of the task under a new id, and
  // a result record with a copy of its latest outcome: an outcome nobody submitted.
  tasks::BatchRecord ghost{tasks::makeBatchName(tasks::batchTime(ref.batch), 0xdead), 0, {}};
  ghost.submitted_at = batch->submitted_at;
  ghost.tasks.push_back(batch->tasks[ref.index]);
  ghost.tasks.back().id = "ghost-" + id;
  tasks::ResultRecord result;
  result.outcomes.push_back(*records->back().second.find(ref.index));
  result.outcomes.back().index = 0;
  result.outcomes.back().id = ghost.tasks.back().id;
  auto made = await(
      c.create({l.batch(ghost.name), tasks::encode(ghost), coord::CreateMode::kPersistent, {}}),
      "create batch");
  if (!made) return "phantom: " + made.error();
  auto rec = await(c.create({l.batch(ghost.name) + "/" + tasks::resultPrefix(result),
                             tasks::encode(result),
                             coord::CreateMode::kPersistentSequential,
                             {}}),
                   "create result record");
  return rec ? fmt::format("phantom: wrote {} and {}, an outcome of {} (nobody submitted it)",
                           l.batch(ghost.name), *rec, ghost.tasks.back().id)
             : "phantom: " + rec.error();
}

std::string plantLeftover(coord::Coordination& c, const tasks::Layout& l, const std::string& id,
                          const tasks::TaskRef& ref) {
  auto records = recordsOf(c, l, ref);
  if (!records) return "leftover: " + records.error();
  if (records->empty()) return "leftover: " + id + " has no outcome";
  int attempt = records->back().second.find(ref.index)->attempt;
  // The task waits again in its batch's pending state (created when the sweep removed it).
  tasks::PendingState state;
  auto node = c.get(l.pending(ref.batch), nullptr).waitFor(30s);
  int32_t version = -1;
  if (node && *node) {
    auto decoded = tasks::decodePending((*node)->data);
    if (!decoded) return "leftover: undecodable " + l.pending(ref.batch);
    state = *decoded;
    version = (*node)->stat.version;
  }
  state.wait(ref.index, tasks::Waiting{attempt + 1, 0, ""});
  auto done = version >= 0
                  ? await(c.set(l.pending(ref.batch), tasks::encode(state), version), "set")
                        .map([](auto&&) {})
                  : await(c.create({l.pending(ref.batch),
                                    tasks::encode(state),
                                    coord::CreateMode::kPersistent,
                                    {}}),
                          "create")
                        .map([](auto&&) {});
  return done ? fmt::format("leftover: {} of finished task {} lists it waiting again",
                            l.pending(ref.batch), id)
              : "leftover: " + done.error();
}

}  // namespace

std::string plant(coord::Coordination& c, const tasks::Layout& l, const std::string& kind,
                  const std::vector<Request>& history, const std::function<void(int)>& crash) {
  if (kind == "crash") {
    crash(SIGABRT);
    return "crash: sent SIGABRT to n1 (a node that dies on its own)";
  }
  const Request* acked = nullptr;
  for (const auto& r : history) {
    if (r.acknowledged() && (acked == nullptr || r.end_ms < acked->end_ms)) acked = &r;
  }
  if (acked == nullptr) return kind + ": nothing acknowledged to plant on";
  const std::string& id = acked->id;
  auto ref = refOf(c, l, id);
  if (!ref) return kind + ": " + ref.error();
  if (kind == "lost") return plantLost(c, l, id, *ref);
  if (kind == "phantom") return plantPhantom(c, l, id, *ref);
  if (kind == "leftover") return plantLeftover(c, l, id, *ref);
  return kind + ": unknown kind";
}

}  // namespace drover::jepsen

#include "api/batch_reader.h"

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>

#include "base/clock.h"
#include "base/ids.h"

namespace drover::api {
namespace {

using coord::Code;
using tasks::BatchRecord;
using tasks::State;
using tasks::TaskRef;
using tasks::TaskStatus;
using Clock = std::chrono::steady_clock;

// What a decoded record takes in memory, estimated: its structs, plus the heap its strings and
// JSON values take, put at a multiple of its encoded size. Measured with mallinfo2 (500 no-op
// tasks, payload {"n": i}): the batch record, 47,914 bytes encoded, decodes to 231,504 bytes
// (estimate 219,892); its result record, 40,903 bytes encoded, to 73,968 (estimate 92,451).
size_t memoryOf(const BatchRecord& record, const std::string& encoded) {
  return sizeof(BatchRecord) + record.tasks.size() * sizeof(tasks::TaskSpec) + 2 * encoded.size();
}
size_t memoryOf(const tasks::ResultRecord& record, const std::string& encoded) {
  return sizeof(tasks::ResultRecord) + record.outcomes.size() * sizeof(tasks::Outcome) +
         encoded.size() / 2;
}
// Rounds of reads locate() makes when the task moved between two of them.
constexpr int kLocateRounds = 4;

bool holds(const std::string& child, uint32_t index) {
  auto range = tasks::resultRange(child);
  return range && range->first <= index && index <= range->second;
}

// The last kHistoryShown of a task's outcomes (oldest first) as GET shows them.
std::vector<tasks::AttemptRecord> historyOf(const std::vector<tasks::Outcome>& outcomes) {
  std::vector<tasks::AttemptRecord> out;
  size_t from = outcomes.size() > tasks::kHistoryShown ? outcomes.size() - tasks::kHistoryShown : 0;
  for (size_t k = from; k < outcomes.size(); ++k) {
    const auto& o = outcomes[k];
    out.push_back({o.attempt, o.worker, o.started_at, o.finished_at, o.state, o.error});
  }
  return out;
}

}  // namespace

TaskStatus finishedStatus(const BatchRecord& batch, uint32_t index, const tasks::Outcome& o) {
  TaskStatus s;
  s.spec = batch.tasks.at(index);
  s.state = o.state;
  s.attempts = o.attempt;
  s.worker = o.worker;
  s.result = o.result;
  s.error = o.error;
  s.submitted_at = batch.submitted_at;
  s.started_at = o.started_at;
  s.finished_at = o.finished_at;
  return s;
}

TaskStatus waitingStatus(const BatchRecord& batch, uint32_t index, const tasks::Waiting& w) {
  TaskStatus s;
  s.spec = batch.tasks.at(index);
  // Not due yet: waiting for its run_at (a retry's backoff is `pending`, as the contract says).
  s.state =
      w.attempt == 1 && s.spec.run_at > base::wallMillis() ? State::kWaiting : State::kPending;
  s.attempts = w.attempt - 1;  // the last attempt that ran
  s.error = w.error;
  s.submitted_at = batch.submitted_at;
  return s;
}

TaskStatus heldStatus(const BatchRecord& batch, const tasks::ChunkItem& item,
                      const std::string& worker, const std::map<std::string, int64_t>& running) {
  TaskStatus s;
  s.spec = batch.tasks.at(item.ref.index);
  s.state = State::kAssigned;
  s.attempts = item.attempt;
  s.worker = worker;
  s.error = item.error;
  s.submitted_at = batch.submitted_at;
  if (auto it = running.find(s.spec.id); it != running.end()) {
    s.state = State::kRunning;
    s.started_at = it->second;
  }
  return s;
}

struct BatchReader::WaitSignal {
  std::mutex mu;
  std::condition_variable cv;
  bool fired = false;
  void fire() {
    std::lock_guard lock(mu);
    fired = true;
    cv.notify_all();
  }
};

BatchReader::BatchReader(coord::Coordination& coord, tasks::Layout layout, StoreOptions options)
    : coord_(coord),
      layout_(std::move(layout)),
      options_(options),
      registry_(coord, layout_, options_) {}

void BatchReader::remember(const std::string& key, size_t bytes) {
  cache_order_.emplace_back(key, bytes);
  cache_bytes_ += bytes;
  while (cache_bytes_ > options_.record_cache_bytes && !cache_order_.empty()) {
    auto [old, size] = cache_order_.front();
    cache_order_.pop_front();
    cache_bytes_ -= size;
    batches_.erase(old);
    results_.erase(old);
  }
}

StoreResult<std::optional<TaskRef>> BatchReader::resolve(const std::string& id) {
  if (!base::isValidName(id)) return problem(Failure::kBadRequest, "invalid task id");
  if (auto ref = tasks::parseGeneratedId(id)) return std::optional<TaskRef>(*ref);
  auto node = await(coord_.get(layout_.idEntry(id), nullptr));
  if (!node) {
    if (node.error().code() == Code::kNoNode) return std::optional<TaskRef>{};
    return tl::unexpected(fromCoord(node.error(), "read task id"));
  }
  auto ref = tasks::decodeRef(node->data);
  if (!ref) return problem(Failure::kInternal, fmt::format("id entry of '{}' is unreadable", id));
  return std::optional<TaskRef>(*ref);
}

std::shared_ptr<const BatchRecord> BatchReader::cachedBatch(const std::string& name) {
  std::lock_guard lock(cache_mu_);
  auto it = batches_.find(name);
  return it == batches_.end() ? nullptr : it->second;
}

StoreResult<std::shared_ptr<const BatchRecord>> BatchReader::keepBatch(
    const std::string& name, const coord::Result<coord::Node>& node) {
  if (!node) {
    if (node.error().code() == Code::kNoNode) return std::shared_ptr<const BatchRecord>{};
    return tl::unexpected(fromCoord(node.error(), "read batch"));
  }
  auto decoded = tasks::decodeBatch(name, node->data);
  if (!decoded) return problem(Failure::kInternal, fmt::format("batch {} is unreadable", name));
  auto record = std::make_shared<const BatchRecord>(std::move(*decoded));
  std::lock_guard lock(cache_mu_);
  if (batches_.emplace(name, record).second) remember(name, memoryOf(*record, node->data));
  return record;
}

StoreResult<std::shared_ptr<const BatchRecord>> BatchReader::batch(const std::string& name) {
  if (auto cached = cachedBatch(name)) return cached;
  return keepBatch(name, await(coord_.get(layout_.batch(name), nullptr)));
}

std::shared_ptr<const tasks::ResultRecord> BatchReader::cachedResults(const std::string& key) {
  std::lock_guard lock(cache_mu_);
  auto it = results_.find(key);
  return it == results_.end() ? nullptr : it->second;
}

StoreResult<std::shared_ptr<const tasks::ResultRecord>> BatchReader::keepResults(
    const std::string& key, const coord::Result<coord::Node>& node) {
  if (!node) {
    if (node.error().code() == Code::kNoNode) return std::shared_ptr<const tasks::ResultRecord>{};
    return tl::unexpected(fromCoord(node.error(), "read results"));
  }
  auto decoded = tasks::decodeResults(node->data);
  if (!decoded) return problem(Failure::kInternal, fmt::format("results {} are unreadable", key));
  auto record = std::make_shared<const tasks::ResultRecord>(std::move(*decoded));
  std::lock_guard lock(cache_mu_);
  if (results_.emplace(key, record).second) remember(key, memoryOf(*record, node->data));
  return record;
}

StoreResult<std::shared_ptr<const tasks::ResultRecord>> BatchReader::resultRecord(
    const std::string& batch, const std::string& child) {
  const std::string key = batch + "/" + child;
  if (auto cached = cachedResults(key)) return cached;
  return keepResults(key, await(coord_.get(layout_.batch(batch) + "/" + child, nullptr)));
}

StoreResult<std::vector<tasks::Outcome>> BatchReader::findOutcomes(const TaskRef& ref,
                                                                   const coord::Watcher& watcher) {
  auto children = await(coord_.children(layout_.batch(ref.batch), watcher));
  if (!children) {
    if (children.error().code() == Code::kNoNode) return problem(Failure::kNotFound, "no batch");
    return tl::unexpected(fromCoord(children.error(), "list results"));
  }
  std::vector<tasks::Outcome> found;
  for (const auto& child : tasks::resultsInOrder(std::move(*children))) {
    if (!holds(child, ref.index)) continue;
    auto record = resultRecord(ref.batch, child);
    if (!record) return tl::unexpected(record.error());
    if (!*record) continue;
    if (const auto* o = (*record)->find(ref.index)) found.push_back(*o);
  }
  return found;
}

StoreResult<std::map<std::string, int64_t>> BatchReader::runningOn(const std::string& worker) {
  auto node = await(coord_.get(layout_.worker(worker), nullptr));
  if (!node) {
    if (node.error().code() == Code::kNoNode) return std::map<std::string, int64_t>{};
    return tl::unexpected(fromCoord(node.error(), "read worker"));
  }
  auto j = tasks::parseJson(node->data);
  auto info = j ? tasks::workerFromJson(*j) : std::nullopt;
  if (!info) return std::map<std::string, int64_t>{};
  return std::move(info->running);
}

StoreResult<std::optional<TaskPlace>> BatchReader::locate(const TaskRef& ref,
                                                          const coord::Watcher& watcher) {
  auto record = batch(ref.batch);
  if (!record) return tl::unexpected(record.error());
  if (!*record || ref.index >= (*record)->tasks.size()) return std::optional<TaskPlace>{};
  const BatchRecord& b = **record;
  for (int round = 0; round < kLocateRounds; ++round) {
    // Results first: a finished task costs the listing and its records (one, unless it was
    // retried). The latest outcome decides; `pending` (retried or re-opened) reads on.
    auto outcomes = findOutcomes(ref, watcher);
    if (!outcomes) {
      if (outcomes.error().failure == Failure::kNotFound) return std::optional<TaskPlace>{};
      return tl::unexpected(outcomes.error());
    }
    TaskPlace place;
    place.ref = ref;
    auto history = historyOf(*outcomes);
    if (!outcomes->empty() && outcomes->back().state != State::kPending) {
      place.kind = TaskPlace::Kind::kFinished;
      place.status = finishedStatus(b, ref.index, outcomes->back());
      place.status.history = std::move(history);
      return std::optional<TaskPlace>(std::move(place));
    }
    auto pending = await(coord_.get(layout_.pending(ref.batch), watcher));
    if (!pending) {
      if (pending.error().code() == Code::kNoNode) continue;  // finished meanwhile
      return tl::unexpected(fromCoord(pending.error(), "read pending state"));
    }
    auto state = tasks::decodePending(pending->data);
    if (!state) return problem(Failure::kInternal, "pending state is unreadable");
    place.pending = std::move(*state);
    place.pending_version = pending->stat.version;
    if (const auto* w = place.pending.waitingAt(ref.index)) {
      place.kind = TaskPlace::Kind::kWaiting;
      place.status = waitingStatus(b, ref.index, *w);
      place.status.history = std::move(history);
      return std::optional<TaskPlace>(std::move(place));
    }
    const auto* h = place.pending.heldAt(ref.index);
    if (!h) continue;  // finished after the listing: read the results again
    place.worker = h->worker;
    place.chunk_name = h->chunk;
    auto chunk = await(coord_.get(layout_.chunk(h->worker, h->chunk), watcher));
    if (!chunk) {
      if (chunk.error().code() == Code::kNoNode) continue;  // committed or moved
      return tl::unexpected(fromCoord(chunk.error(), "read chunk"));
    }
    auto items = tasks::decodeChunk(chunk->data);
    if (!items) return problem(Failure::kInternal, "chunk is unreadable");
    const auto* item = items->find(ref);
    if (!item) continue;
    place.kind = TaskPlace::Kind::kHeld;
    place.item = *item;
    place.chunk = std::move(*items);
    place.chunk_version = chunk->stat.version;
    auto running = runningOn(place.worker);
    if (!running) return tl::unexpected(running.error());
    place.status = heldStatus(b, place.item, place.worker, *running);
    place.status.history = std::move(history);
    return std::optional<TaskPlace>(std::move(place));
  }
  return problem(Failure::kUnavailable, "the task kept moving while it was read; try again");
}

StoreResult<TaskStatus> BatchReader::get(const std::string& id) {
  auto ref = resolve(id);
  if (!ref) return tl::unexpected(ref.error());
  if (!*ref) return problem(Failure::kNotFound, fmt::format("no task '{}'", id));
  auto place = locate(**ref);
  if (!place) return tl::unexpected(place.error());
  if (!*place) return problem(Failure::kNotFound, fmt::format("no task '{}'", id));
  return std::move((*place)->status);
}

StoreResult<TaskStatus> BatchReader::wait(const std::string& id,
                                          std::chrono::milliseconds timeout) {
  auto ref = resolve(id);
  if (!ref) return tl::unexpected(ref.error());
  if (!*ref) return problem(Failure::kNotFound, fmt::format("no task '{}'", id));
  const auto deadline = Clock::now() + timeout;
  auto signal = std::make_shared<WaitSignal>();
  {
    std::lock_guard lock(waits_mu_);
    waits_.insert(signal);
  }
  struct Leave {
    BatchReader* self;
    std::shared_ptr<WaitSignal> signal;
    ~Leave() {
      std::lock_guard lock(self->waits_mu_);
      self->waits_.erase(signal);
    }
  } leave{this, signal};
  for (;;) {
    {
      std::lock_guard lock(signal->mu);
      signal->fired = false;
    }
    // The watches hold the signal weakly: a wait that returned leaves nothing alive behind.
    std::weak_ptr<WaitSignal> weak = signal;
    coord::Watcher watcher = [weak](const coord::WatchEvent&) {
      if (auto s = weak.lock()) s->fire();
    };
    auto place = locate(**ref, watcher);
    if (!place) return tl::unexpected(place.error());
    if (!*place) return problem(Failure::kNotFound, fmt::format("no task '{}'", id));
    if ((*place)->kind == TaskPlace::Kind::kFinished || interrupted_.load()) {
      return std::move((*place)->status);
    }
    std::unique_lock lock(signal->mu);
    if (!signal->cv.wait_until(lock, deadline, [&] { return signal->fired; })) {
      return std::move((*place)->status);
    }
  }
}

void BatchReader::interruptWaits() {
  interrupted_ = true;
  std::lock_guard lock(waits_mu_);
  for (const auto& s : waits_) s->fire();
}

StoreResult<std::vector<std::string>> BatchReader::sortedChildren(const std::string& path) {
  auto names = await(coord_.children(path, nullptr));
  if (!names) {
    if (names.error().code() == Code::kNoNode) return std::vector<std::string>{};
    return tl::unexpected(fromCoord(names.error(), "list batches"));
  }
  std::sort(names->begin(), names->end());
  return std::move(*names);
}

// One batch's tasks as a page shows them. Reads the pending state, then the chunks it points
// to, then the results: a later read wins, so a task that moves meanwhile shows where it went.
struct BatchReader::View {
  std::optional<tasks::PendingState> pending;
  std::map<uint32_t, std::pair<tasks::ChunkItem, std::string>> held;  // index -> item, worker
  std::map<uint32_t, tasks::Outcome> outcomes;
};

StoreResult<TaskPage> BatchReader::page(bool newest, std::optional<State> state, size_t limit,
                                        std::optional<TaskRef> after, const TaskFilter& filter) {
  TaskPage out;
  auto cursor = [&](const TaskRef& ref) {
    return newest ? fmt::format("{}-{}", tasks::batchTime(ref.batch), tasks::generatedId(ref))
                  : tasks::generatedId(ref);
  };
  auto buckets = sortedChildren(layout_.batches());
  if (!buckets) return tl::unexpected(buckets.error());
  if (newest) std::reverse(buckets->begin(), buckets->end());
  const size_t digits = tasks::Layout::kBatchBucketDigits;
  std::map<std::string, std::map<std::string, int64_t>> running;  // per worker, for this page
  size_t opened = 0;
  std::optional<TaskRef> last;       // the last position examined
  std::optional<TaskRef> limit_ref;  // the last task taken
  for (const auto& bucket : *buckets) {
    if (after) {
      const std::string b = after->batch.substr(0, digits);
      if (newest ? bucket > b : bucket < b) continue;
    }
    auto names = sortedChildren(layout_.batchBucket(bucket));
    if (!names) return tl::unexpected(names.error());
    if (newest) std::reverse(names->begin(), names->end());
    for (const auto& name : *names) {
      if (!tasks::isBatchName(name)) continue;
      if (after && (newest ? name > after->batch : name < after->batch)) continue;
      if (opened == kPageBatches) {
        if (last) out.next = cursor(*last);
        return out;
      }
      auto record = batch(name);
      if (!record) return tl::unexpected(record.error());
      if (!*record || (*record)->tasks.empty()) continue;
      const BatchRecord& b = **record;
      const uint32_t n = static_cast<uint32_t>(b.tasks.size());
      std::vector<uint32_t> order;
      for (uint32_t k = 0; k < n; ++k) {
        uint32_t i = newest ? n - 1 - k : k;
        if (after && name == after->batch && (newest ? i >= after->index : i <= after->index)) {
          continue;
        }
        if (filter.matches(b.tasks[i])) order.push_back(i);
      }
      last = TaskRef{name, newest ? 0 : n - 1};
      if (order.empty()) continue;
      ++opened;
      View view;
      auto pending = await(coord_.get(layout_.pending(name), nullptr));
      if (pending) {
        view.pending = tasks::decodePending(pending->data);
        if (!view.pending) return problem(Failure::kInternal, "pending state is unreadable");
      } else if (pending.error().code() != Code::kNoNode) {
        return tl::unexpected(fromCoord(pending.error(), "read pending state"));
      }
      const bool want_held = !state || *state == State::kAssigned || *state == State::kRunning;
      if (view.pending && want_held) {
        std::set<std::pair<std::string, std::string>> chunks;
        for (const auto& [i, h] : view.pending->held()) chunks.insert({h.worker, h.chunk});
        for (const auto& [worker, chunk] : chunks) {
          auto node = await(coord_.get(layout_.chunk(worker, chunk), nullptr));
          if (!node) {
            if (node.error().code() == Code::kNoNode) continue;
            return tl::unexpected(fromCoord(node.error(), "read chunk"));
          }
          auto items = tasks::decodeChunk(node->data);
          if (!items) return problem(Failure::kInternal, "chunk is unreadable");
          for (auto& item : items->items) {
            if (item.ref.batch == name) view.held[item.ref.index] = {item, worker};
          }
          if (!running.count(worker)) {
            auto r = runningOn(worker);
            if (!r) return tl::unexpected(r.error());
            running[worker] = std::move(*r);
          }
        }
      }
      const bool want_done = !state || tasks::isTerminal(*state);
      if (want_done) {
        auto children = await(coord_.children(layout_.batch(name), nullptr));
        if (!children) {
          if (children.error().code() == Code::kNoNode) continue;  // retention took it
          return tl::unexpected(fromCoord(children.error(), "list results"));
        }
        // In write order: the latest outcome of each task wins (a retried task's history).
        for (const auto& child : tasks::resultsInOrder(std::move(*children))) {
          auto r = resultRecord(name, child);
          if (!r) return tl::unexpected(r.error());
          if (*r) {
            for (const auto& o : (*r)->outcomes) view.outcomes[o.index] = o;
          }
        }
      }
      for (uint32_t i : order) {
        std::optional<TaskStatus> status;
        if (auto o = view.outcomes.find(i);
            o != view.outcomes.end() && o->second.state != State::kPending) {
          status = finishedStatus(b, i, o->second);
        } else if (const auto* w = view.pending ? view.pending->waitingAt(i) : nullptr) {
          status = waitingStatus(b, i, *w);
        } else if (auto h = view.held.find(i); h != view.held.end()) {
          status = heldStatus(b, h->second.first, h->second.second, running[h->second.second]);
        }
        if (!status || (state && status->state != *state)) continue;
        // One past the limit tells whether a next page exists: the last page offers none.
        if (out.tasks.size() == limit) {
          out.next = cursor(*limit_ref);
          return out;
        }
        out.tasks.push_back(std::move(*status));
        limit_ref = TaskRef{name, i};
      }
    }
  }
  return out;
}

StoreResult<TaskPage> BatchReader::list(std::optional<State> state, size_t limit,
                                        const std::string& cursor, const TaskFilter& filter) {
  std::optional<TaskRef> after;
  if (!cursor.empty()) {
    after = tasks::parseGeneratedId(cursor);
    if (!after) return problem(Failure::kBadRequest, "cursor: not a position of this listing");
  }
  return page(false, state, std::max<size_t>(1, limit), after, filter);
}

StoreResult<TaskPage> BatchReader::listNewest(std::optional<State> state, size_t limit,
                                              const std::optional<NewestCursor>& after,
                                              const TaskFilter& filter) {
  std::optional<TaskRef> ref;
  if (after) {
    ref = tasks::parseGeneratedId(after->id);
    if (!ref) return problem(Failure::kBadRequest, "cursor: not a position of this listing");
  }
  return page(true, state, std::max<size_t>(1, limit), ref, filter);
}

}  // namespace drover::api

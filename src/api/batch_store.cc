#include "api/batch_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>
#include <set>
#include <thread>

#include "base/clock.h"
#include "base/ids.h"
#include "tasks/protocol.h"

namespace drover::api {
namespace {

using coord::Code;
using tasks::BatchRecord;
using tasks::State;
using tasks::TaskRef;
using tasks::TaskSpec;
using tasks::TaskStatus;
using Clock = std::chrono::steady_clock;

// Rounds a submit makes when its client id was taken and then vanished (retention racing it).
constexpr int kSubmitRounds = 8;

std::mt19937_64& rng() {
  thread_local std::mt19937_64 r{std::random_device{}()};
  return r;
}

// A client id: valid, and not of the generated shape (it would be read as one).
std::optional<Problem> badId(const std::string& id) {
  if (id.empty()) return std::nullopt;  // generated
  if (!base::isValidName(id)) return Problem{Failure::kBadRequest, "invalid task id"};
  if (tasks::parseGeneratedId(id)) {
    return Problem{
        Failure::kBadRequest,
        fmt::format("task id '{}' has the shape of a generated id ({{batch}}.{{index}}); "
                    "choose another or leave it out",
                    id)};
  }
  return std::nullopt;
}

BatchRecord recordOf(const std::string& name, int64_t stamp, const std::vector<TaskSpec>& specs) {
  BatchRecord rec{name, stamp, specs};
  for (uint32_t i = 0; i < rec.tasks.size(); ++i) {
    if (rec.tasks[i].id.empty()) rec.tasks[i].id = tasks::generatedId({name, i});
  }
  return rec;
}

TaskStatus pendingStatus(const BatchRecord& rec, uint32_t index) {
  return waitingStatus(rec, index, tasks::Waiting{});
}

}  // namespace

struct BatchStore::Entry {
  TaskSpec spec;
  bool done = false;  // under mu_
  Sent sent;
  uint32_t index = 0;  // committed: its place in the batch
  int64_t stamp = 0;   // committed: the batch's submit time
};

BatchStore::BatchStore(coord::Coordination& coord, tasks::Layout layout, StoreOptions options)
    : coord_(coord),
      layout_(std::move(layout)),
      options_(options),
      reader_(coord, layout_, options_),
      queues_(coord, layout_, options_.call_timeout),
      admission_(coord, layout_, options_) {}

size_t BatchStore::queuedSubmits() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

static void pause(const base::Backoff& backoff, int attempt) {
  std::this_thread::sleep_for(backoff.delay(static_cast<uint32_t>(attempt), rng()()));
}

BatchStore::Sent BatchStore::send(const std::vector<TaskSpec>& specs, int64_t stamp) {
  auto fail = [](Failure f, std::string detail) {
    Sent s;
    s.problem = Problem{f, std::move(detail)};
    return s;
  };
  const auto deadline = Clock::now() + options_.settle_deadline;
  std::string name = tasks::makeBatchName(stamp, static_cast<uint32_t>(rng()()));
  bool ambiguous = false;  // an earlier send under `name` may have committed
  for (int attempt = 1;; ++attempt) {
    if (Clock::now() >= deadline) {
      return fail(Failure::kUnavailable,
                  ambiguous ? "the outcome of the submit is unknown (ZooKeeper unreachable); "
                              "retry with the same ids"
                            : "the submit did not go through in time; try again");
    }
    const BatchRecord rec = recordOf(name, stamp, specs);
    tasks::v2::Builder builder(layout_);
    builder.submit(rec);
    auto m = std::move(builder).finish();
    auto r = await(coord_.multi(std::move(m.ops)));
    if (r) {
      Sent s;
      s.kind = Sent::Kind::kCommitted;
      s.batch = name;
      return s;
    }
    const coord::Error& err = r.error();
    const auto role = m.decoder.failed(err);
    if (!role) {
      if (!err.outcomeUnknown() && !err.retryable()) {
        Sent s;
        s.problem = fromCoord(err, "submit");
        return s;
      }
      ambiguous = ambiguous || err.outcomeUnknown();
      pause(options_.backoff, attempt);
      continue;  // the same name again: a NodeExists on it then tells whether it was ours
    }
    const std::string bucket = name.substr(0, tasks::Layout::kBatchBucketDigits);
    switch (role->part) {
      case tasks::v2::Part::kBatch:
      case tasks::v2::Part::kPending:
        if (err.code() == Code::kNoNode) {
          // The time bucket is missing: create it (both trees), then send again.
          for (const auto& dir : {layout_.batchBucket(bucket), layout_.pendingBucket(bucket)}) {
            auto made =
                await(coord_.create(coord::CreateOp{dir, "", coord::CreateMode::kPersistent, {}}));
            if (!made && made.error().code() == Code::kNoNode) {
              return fail(Failure::kUnavailable,
                          fmt::format("the drover tree under {} is not initialised for protocol 2",
                                      layout_.root()));
            }
          }
          continue;
        }
        if (err.code() == Code::kNodeExists) {
          if (ambiguous && role->part == tasks::v2::Part::kBatch) {
            auto found = await(coord_.get(layout_.batch(name), nullptr));
            if (!found) {
              pause(options_.backoff, attempt);
              continue;  // read again (or send again if it is gone)
            }
            if (found->data == tasks::encode(rec)) {
              Sent s;
              s.kind = Sent::Kind::kCommitted;
              s.batch = name;
              return s;
            }
          }
          // Someone else's batch under this name: pick another (ours never landed under it).
          name = tasks::makeBatchName(stamp, static_cast<uint32_t>(rng()()));
          ambiguous = false;
          continue;
        }
        break;
      case tasks::v2::Part::kId:
        if (err.code() == Code::kNodeExists) {
          Sent s;
          s.kind = Sent::Kind::kIdTaken;
          s.id = role->key;
          return s;
        }
        if (err.code() == Code::kNoNode) {
          return fail(Failure::kUnavailable,
                      fmt::format("the drover tree under {} is not initialised for protocol 2",
                                  layout_.root()));
        }
        break;
      default:
        break;
    }
    return fail(Failure::kInternal, fmt::format("the submit's {} failed: {}",
                                                tasks::v2::partName(role->part), err.toString()));
  }
}

void BatchStore::sendGroup(std::vector<std::shared_ptr<Entry>> entries) {
  while (!entries.empty()) {
    std::vector<TaskSpec> specs;
    specs.reserve(entries.size());
    for (const auto& e : entries) specs.push_back(e->spec);
    const int64_t stamp = base::wallMillis();
    Sent sent = send(specs, stamp);
    std::lock_guard lock(mu_);
    if (sent.kind == Sent::Kind::kIdTaken) {
      // That submit is resolved alone (by its own thread); the rest of the group goes again.
      std::erase_if(entries, [&](const std::shared_ptr<Entry>& e) {
        if (e->spec.id != sent.id) return false;
        e->sent = sent;
        e->done = true;
        return true;
      });
      cv_.notify_all();
      continue;
    }
    for (uint32_t i = 0; i < entries.size(); ++i) {
      entries[i]->sent = sent;
      entries[i]->index = i;
      entries[i]->stamp = stamp;
      entries[i]->done = true;
    }
    cv_.notify_all();
    return;
  }
}

void BatchStore::runUntilDone(const std::shared_ptr<Entry>& entry) {
  std::unique_lock lock(mu_);
  queue_.push_back(entry);
  while (!entry->done) {
    if (inflight_ >= options_.group_inflight || queue_.empty()) {
      cv_.wait(lock);
      continue;
    }
    ++inflight_;
    const size_t max_tasks = std::max<size_t>(1, options_.group_max_tasks);
    if (options_.group_linger.count() > 0 && last_group_ > 1) {
      // Under load: wait a little for more submits (another thread may take the queue
      // meanwhile, ours included: the loop then waits for that group's reply).
      const auto until = Clock::now() + options_.group_linger;
      while (queue_.size() < max_tasks && cv_.wait_until(lock, until) != std::cv_status::timeout) {
      }
    }
    std::vector<std::shared_ptr<Entry>> group;
    while (!queue_.empty() && group.size() < max_tasks) {
      group.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    if (group.empty()) {  // taken by another thread while this one waited
      --inflight_;
      continue;
    }
    last_group_ = group.size();
    lock.unlock();
    sendGroup(std::move(group));
    lock.lock();
    --inflight_;
    cv_.notify_all();
  }
}

StoreResult<std::optional<SubmitResult>> BatchStore::existing(const TaskSpec& spec) {
  auto ref = reader_.resolve(spec.id);
  if (!ref) return tl::unexpected(ref.error());
  if (!*ref) return std::optional<SubmitResult>{};
  auto record = reader_.batch((*ref)->batch);
  if (!record) return tl::unexpected(record.error());
  if (!*record || (*ref)->index >= (*record)->tasks.size()) return std::optional<SubmitResult>{};
  if (!tasks::sameTask((*record)->tasks[(*ref)->index], spec)) {
    return problem(Failure::kConflict,
                   fmt::format("task '{}' already exists with a different spec", spec.id));
  }
  SubmitResult found{pendingStatus(**record, (*ref)->index), false};
  if (auto place = reader_.locate(**ref); place && *place) found.status = (*place)->status;
  return std::optional<SubmitResult>(std::move(found));
}

StoreResult<BatchStore::Existing> BatchStore::existingIds(const std::vector<TaskSpec>& specs,
                                                          const std::vector<size_t>& client) {
  std::vector<coord::Future<coord::Node>> reads;
  for (size_t i : client) reads.push_back(coord_.get(layout_.idEntry(specs[i].id), nullptr));
  Existing out;
  for (size_t k = 0; k < client.size(); ++k) {
    const TaskSpec& spec = specs[client[k]];
    auto node = await(reads[k]);
    if (!node) {
      if (node.error().code() == Code::kNoNode) continue;
      return tl::unexpected(fromCoord(node.error(), "read task ids"));
    }
    auto ref = tasks::decodeRef(node->data);
    if (!ref)
      return problem(Failure::kInternal, fmt::format("id entry of '{}' is unreadable", spec.id));
    auto record = reader_.batch(ref->batch);
    if (!record) return tl::unexpected(record.error());
    if (!*record || ref->index >= (*record)->tasks.size()) continue;
    auto& into = tasks::sameTask((*record)->tasks[ref->index], spec) ? out.present : out.differ;
    into.push_back(spec.id);
  }
  return out;
}

StoreResult<SubmitResult> BatchStore::submit(const TaskSpec& spec) {
  if (auto bad = badId(spec.id)) return tl::unexpected(*bad);
  if (!connected()) {
    return problem(Failure::kUnavailable, "not connected to ZooKeeper; try again later");
  }
  if (auto bad = checkDepends({spec}, true)) {
    // Idempotence does not depend on the dependencies' fate: an identical repeat of a task that
    // exists is answered as the first submit was (200), also once a dependency has failed.
    if (bad->failure != Failure::kBadRequest || spec.id.empty()) return tl::unexpected(*bad);
    auto found = existing(spec);
    if (!found) return tl::unexpected(found.error());  // 409 (another spec) or the read's error
    if (*found) return std::move(**found);
    return tl::unexpected(*bad);
  }
  if (auto admitted = admission_.admit(1); !admitted) return tl::unexpected(admitted.error());
  for (int round = 0; round < kSubmitRounds; ++round) {
    auto entry = std::make_shared<Entry>();
    entry->spec = spec;
    if (options_.group_inflight == 0) {
      sendGroup({entry});
    } else {
      runUntilDone(entry);
    }
    switch (entry->sent.kind) {
      case Sent::Kind::kCommitted: {
        BatchRecord rec{entry->sent.batch, entry->stamp, {}};
        rec.tasks.resize(entry->index + 1);
        rec.tasks[entry->index] = spec;
        if (spec.id.empty()) {
          rec.tasks[entry->index].id = tasks::generatedId({rec.name, entry->index});
        }
        return SubmitResult{pendingStatus(rec, entry->index), true};
      }
      case Sent::Kind::kFailed:
        return tl::unexpected(entry->sent.problem);
      case Sent::Kind::kIdTaken: {
        auto found = existing(spec);
        if (!found) return tl::unexpected(found.error());
        if (*found) return std::move(**found);
        break;  // the entry went away again: submit once more
      }
    }
  }
  return problem(Failure::kUnavailable, fmt::format("task '{}' kept changing; retry", spec.id));
}

StoreResult<BatchResult> BatchStore::submitBatch(const std::vector<TaskSpec>& specs) {
  if (specs.empty()) return problem(Failure::kBadRequest, "the batch is empty");
  std::set<std::string> seen;
  std::vector<size_t> client;  // indices of tasks with client-chosen ids
  for (size_t i = 0; i < specs.size(); ++i) {
    if (auto bad = badId(specs[i].id)) return tl::unexpected(*bad);
    if (specs[i].id.empty()) continue;
    if (!seen.insert(specs[i].id).second) {
      return problem(Failure::kBadRequest, fmt::format("task id '{}' appears twice", specs[i].id));
    }
    client.push_back(i);
  }
  if (!connected()) {
    return problem(Failure::kUnavailable, "not connected to ZooKeeper; try again later");
  }
  const int64_t stamp = base::wallMillis();
  {
    const BatchRecord rec = recordOf(tasks::makeBatchName(stamp, 0), stamp, specs);
    const size_t record_bytes = tasks::encode(rec).size();
    if (record_bytes > kMaxRecordBytes) {
      return problem(Failure::kTooLarge,
                     fmt::format("the batch encodes to {} bytes; a batch record holds at most {}: "
                                 "split it",
                                 record_bytes, kMaxRecordBytes));
    }
    tasks::v2::Builder builder(layout_);
    builder.submit(rec);
    if (builder.bytes() > options_.max_multi_bytes) {
      return problem(Failure::kTooLarge,
                     fmt::format("the batch's transaction is {} bytes; one carries at most {}: "
                                 "split it",
                                 builder.bytes(), options_.max_multi_bytes));
    }
  }
  auto names = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 10; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > 10) s += fmt::format(" and {} more", v.size() - 10);
    return s;
  };
  if (auto bad = checkDepends(specs, false)) {
    // As for a single submit: a batch whose every task exists with the same spec is an
    // identical repeat (200) whatever its dependencies did since; one that differs is a 409.
    if (bad->failure != Failure::kBadRequest || client.size() != specs.size()) {
      return tl::unexpected(*bad);
    }
    auto found = existingIds(specs, client);
    if (!found) return tl::unexpected(found.error());
    if (!found->differ.empty()) {
      return problem(Failure::kConflict,
                     fmt::format("tasks exist with a different spec: {}", names(found->differ)));
    }
    if (found->present.size() != specs.size()) return tl::unexpected(*bad);
    std::vector<std::string> ids;
    for (const auto& s : specs) ids.push_back(s.id);
    return BatchResult{std::move(ids), false};
  }
  if (auto admitted = admission_.admit(specs.size()); !admitted) {
    return tl::unexpected(admitted.error());
  }
  for (int round = 0; round < kSubmitRounds; ++round) {
    Sent sent = send(specs, stamp);
    if (sent.kind == Sent::Kind::kFailed) return tl::unexpected(sent.problem);
    if (sent.kind == Sent::Kind::kCommitted) {
      BatchResult out{{}, true};
      for (uint32_t i = 0; i < specs.size(); ++i) {
        out.ids.push_back(specs[i].id.empty() ? tasks::generatedId({sent.batch, i}) : specs[i].id);
      }
      return out;
    }
    // An id is taken: which ones, and with which spec.
    auto found = existingIds(specs, client);
    if (!found) return tl::unexpected(found.error());
    const auto& [present, differ] = *found;
    if (!differ.empty()) {
      return problem(Failure::kConflict,
                     fmt::format("tasks exist with a different spec: {}", names(differ)));
    }
    if (present.empty()) continue;  // gone again: send once more
    if (present.size() == specs.size()) {
      std::vector<std::string> ids;
      for (const auto& s : specs) ids.push_back(s.id);
      return BatchResult{std::move(ids), false};
    }
    return problem(Failure::kConflict,
                   fmt::format("some tasks of the batch exist already ({}); a batch is all or "
                               "nothing: submit the others separately",
                               names(present)));
  }
  return problem(Failure::kUnavailable, "tasks kept changing under the batch submit; retry");
}

StoreResult<CancelResult> BatchStore::cancel(const std::string& id) {
  auto ref = reader_.resolve(id);
  if (!ref) return tl::unexpected(ref.error());
  if (!*ref) return problem(Failure::kNotFound, fmt::format("no task '{}'", id));
  const auto deadline = Clock::now() + options_.settle_deadline;
  auto record = reader_.batch((*ref)->batch);
  if (!record) return tl::unexpected(record.error());
  if (!*record) return problem(Failure::kNotFound, fmt::format("no task '{}'", id));
  for (int attempt = 1; attempt <= options_.cancel_attempts; ++attempt) {
    auto place = reader_.locate(**ref);
    if (!place) return tl::unexpected(place.error());
    if (!*place) return problem(Failure::kNotFound, fmt::format("no task '{}'", id));
    TaskPlace& p = **place;
    if (p.kind == TaskPlace::Kind::kFinished) return CancelResult{std::move(p.status), true};
    if (!connected()) {
      return problem(Failure::kUnavailable, "not connected to ZooKeeper; try again later");
    }
    const int64_t now = base::wallMillis();
    tasks::ChunkItem task;
    tasks::Outcome out;
    out.index = p.ref.index;
    out.state = State::kCancelled;
    out.finished_at = now;
    std::optional<tasks::v2::ChunkWrite> holder;
    if (p.kind == TaskPlace::Kind::kWaiting) {
      const tasks::Waiting* w = p.pending.waitingAt(p.ref.index);
      task.ref = p.ref;
      task.attempt = w->attempt;
      out.attempt = w->attempt - 1;
      out.error = w->error;
    } else {
      task = p.item;
      holder =
          tasks::v2::ChunkWrite{p.worker, p.chunk_name, p.chunk_version, p.chunk.without({p.ref})};
      out.attempt = p.item.attempt;
      out.worker = p.worker;
      out.started_at = p.status.started_at;
      out.error = p.item.error;
    }
    task.id = p.status.spec.id;
    tasks::PendingState after = p.pending;
    after.erase(p.ref.index);
    tasks::v2::Builder builder(layout_);
    builder.cancel(task, tasks::v2::PendingWrite{p.ref.batch, p.pending_version, after}, holder,
                   out);
    auto m = std::move(builder).finish();
    auto r = await(coord_.multi(std::move(m.ops)));
    if (r) return CancelResult{finishedStatus(**record, p.ref.index, out), false};
    const coord::Error& err = r.error();
    const auto role = m.decoder.failed(err);
    if (role &&
        (role->part == tasks::v2::Part::kPending || role->part == tasks::v2::Part::kChunk)) {
      pause(options_.backoff, attempt);  // the token moved (assigned, committed, requeued)
      continue;
    }
    if (role || !err.outcomeUnknown()) return tl::unexpected(fromCoord(err, "cancel"));
    // Ambiguous: sync, then the next round's read tells (a cancelled outcome stamped `now` is
    // ours; another outcome means the task finished first).
    while (Clock::now() < deadline) {
      pause(options_.backoff, attempt);
      auto synced = await(coord_.sync(layout_.batch(p.ref.batch)));
      if (synced || !synced.error().retryable()) break;
    }
    if (Clock::now() >= deadline) {
      return problem(Failure::kUnavailable,
                     fmt::format("the outcome of cancelling '{}' is unknown (ZooKeeper "
                                 "unreachable); retry",
                                 id));
    }
    auto again = reader_.locate(**ref);
    if (again && *again && (*again)->kind == TaskPlace::Kind::kFinished &&
        (*again)->status.state == State::kCancelled && (*again)->status.finished_at == now) {
      return CancelResult{std::move((*again)->status), false};
    }
  }
  return problem(Failure::kUnavailable,
                 fmt::format("task '{}' kept changing; cancel did not settle, retry", id));
}

}  // namespace drover::api

#include "worker/chunk_commits.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "base/clock.h"
#include "base/metrics.h"
#include "tasks/protocol.h"

namespace drover::worker {
namespace {

using coord::Code;

// Unexpected, non-retryable commit errors are tried this many times before giving up.
constexpr uint32_t kMaxOddRetries = 5;

bool holds(const tasks::Chunk* content, const tasks::TaskRef& ref) {
  return content != nullptr && content->find(ref) != nullptr;
}

}  // namespace

ChunkCommits::ChunkCommits(coord::Coordination& coord, const tasks::Layout& layout,
                           std::string worker_id, const AgentOptions& options, Hooks hooks)
    : coord_(coord),
      layout_(layout),
      worker_id_(std::move(worker_id)),
      options_(options),
      hooks_(std::move(hooks)) {}

void ChunkCommits::add(const std::string& chunk, Finished finished) {
  if (halted_) return;
  ChunkState& c = chunks_[chunk];
  if (c.path.empty()) c.path = layout_.chunk(worker_id_, chunk);
  c.ready.push_back(std::move(finished));
  flushSoon();
}

std::optional<int32_t> ChunkCommits::version(const std::string& chunk) const {
  auto it = chunks_.find(chunk);
  if (it == chunks_.end() || !it->second.known) return std::nullopt;
  return it->second.version;
}

size_t ChunkCommits::outstanding() const {
  size_t n = 0;
  for (const auto& [name, c] : chunks_) n += c.ready.size() + c.flight.size();
  return n;
}

void ChunkCommits::synced(const std::string& chunk, std::optional<int32_t> version,
                          std::shared_ptr<const tasks::Chunk> content) {
  if (halted_) return;
  auto it = chunks_.find(chunk);
  if (!version) {
    if (it == chunks_.end()) return;
    ChunkState& c = it->second;
    if (c.phase == Phase::kInFlight) return;  // its reply decides
    // Gone: a commit whose outcome was unknown deleted it (or a cancel took its last tasks and
    // recorded them); either way the outcome is recorded once, and never again by us.
    for (const auto& f : c.flight) hooks_.done(f, true);
    for (const auto& f : c.ready) hooks_.done(f, false);
    chunks_.erase(it);
    return;
  }
  ChunkState& c = chunks_[chunk];
  if (c.path.empty()) c.path = layout_.chunk(worker_id_, chunk);
  if (c.phase == Phase::kInFlight) return;  // read before the multi landed: its reply decides
  if (c.phase == Phase::kSettling) {
    // Our multi removes every task it commits: a chunk still listing them did not get it.
    bool applied = std::none_of(c.flight.begin(), c.flight.end(), [&](const Finished& f) {
      return holds(content.get(), f.item.ref);
    });
    if (applied) {
      for (const auto& f : c.flight) hooks_.done(f, true);
      c.flight.clear();
    }
    requeueFlight(c);
  }
  c.phase = Phase::kIdle;
  c.version = *version;
  c.content = std::move(content);
  c.known = true;
  fence(c);
  if (!c.ready.empty()) flushSoon();
}

void ChunkCommits::fence(ChunkState& c) {
  auto gone = std::stable_partition(c.ready.begin(), c.ready.end(), [&](const Finished& f) {
    return holds(c.content.get(), f.item.ref);
  });
  for (auto it = gone; it != c.ready.end(); ++it) hooks_.done(*it, false);
  c.ready.erase(gone, c.ready.end());
}

void ChunkCommits::requeueFlight(ChunkState& c) {
  c.ready.insert(c.ready.begin(), std::make_move_iterator(c.flight.begin()),
                 std::make_move_iterator(c.flight.end()));
  c.flight.clear();
  c.phase = Phase::kIdle;
}

void ChunkCommits::flushSoon() {
  if (flush_posted_ || halted_) return;
  flush_posted_ = true;
  hooks_.post([this] { flush(); });
}

bool ChunkCommits::havePending(const std::vector<std::string>& batches) {
  bool all = true;
  for (const auto& b : batches) {
    if (pending_.count(b) != 0) continue;
    all = false;
    if (pending_reads_.count(b) == 0) readPending(b);
  }
  return all;
}

void ChunkCommits::readPending(const std::string& batch) {
  pending_reads_.insert(batch);
  auto post = hooks_.post;
  coord_.get(layout_.pending(batch), nullptr)
      .then([this, post, batch](const coord::Result<coord::Node>& r) {
        post([this, batch, r] {
          if (halted_) return;
          pending_reads_.erase(batch);
          std::optional<tasks::PendingState> state;
          if (r) state = tasks::decodePending(r->data);
          if (r && state) {
            pending_tries_.erase(batch);
            pending_[batch] = PendingCopy{r->stat.version, std::move(*state)};
            flushSoon();
            return;
          }
          if (!r && (r.error().sessionLost() || r.error().code() == Code::kClosing)) {
            hooks_.session_lost(r.error());
            return;
          }
          if (!r && r.error().retryable()) {
            uint32_t n = ++pending_tries_[batch];
            hooks_.post_after(options_.zk_backoff.delay(n), [this] { flushSoon(); });
            return;
          }
          // No pending state to go back to (gone, or unreadable): the retries of this batch
          // fail for good rather than vanish.
          spdlog::error("worker {}: pending state of batch {} {}; its retries fail", worker_id_,
                        batch, r ? "is unreadable" : r.error().toString());
          for (auto& [name, c] : chunks_) {
            for (auto& f : c.ready) {
              if (f.retry && f.item.ref.batch == batch) f.retry.reset();
            }
          }
          flushSoon();
        });
      });
}

bool ChunkCommits::addTo(tasks::v2::Builder& b, const std::string& name, ChunkState& c,
                         std::set<std::string>& batches_used) {
  std::vector<tasks::TaskRef> refs;
  std::map<std::string, tasks::ResultRecord> outcomes;
  std::map<std::string, tasks::v2::PendingWrite> retries;
  std::vector<tasks::ChunkItem> retried;
  bool callbacks = false;
  refs.reserve(c.ready.size());
  for (const auto& f : c.ready) {
    refs.push_back(f.item.ref);
    const std::string& batch = f.item.ref.batch;
    if (!f.retry) {
      outcomes[batch].outcomes.push_back(f.outcome);
      callbacks = callbacks || f.callback;
      continue;
    }
    // One write per pending state per multi: a batch another chunk of this multi puts tasks
    // back into waits for the next one.
    if (batches_used.count(batch) != 0) return false;
    auto [it, fresh] = retries.try_emplace(batch);
    if (fresh) {
      const PendingCopy& copy = pending_.at(batch);
      it->second = tasks::v2::PendingWrite{batch, copy.version, copy.state};
    }
    it->second.after.wait(f.item.ref.index, *f.retry);
    retried.push_back(f.item);
    // The attempt's end is history: recorded `pending` in the result record this multi writes
    // for the batch anyway when another of its tasks ended (else one more create per batch).
    tasks::Outcome history = f.outcome;
    history.state = tasks::State::kPending;
    history.result = nullptr;  // the detail of a failure stays with the final outcome
    outcomes[batch].outcomes.push_back(std::move(history));
  }
  std::vector<tasks::v2::PendingWrite> writes;
  for (auto& [batch, w] : retries) {
    batches_used.insert(batch);
    writes.push_back(std::move(w));
  }
  tasks::v2::ChunkWrite write{worker_id_, name, c.version,
                              c.content ? c.content->without(refs) : tasks::Chunk{}};
  b.commit(write, outcomes, writes, retried, base::wallMillis());
  b.callbacks(callbacks);
  return true;
}

void ChunkCommits::flush() {
  flush_posted_ = false;
  if (halted_) return;
  // One commit write in flight per worker: outcomes that finish meanwhile wait for its reply and
  // go out together. Idle, a lone outcome goes at once; under load each write carries more tasks
  // (a write costs the ensemble far more than the bytes of one more outcome in it).
  if (multis_inflight_ > 0) return;
  std::vector<std::string> names;
  for (auto& [name, c] : chunks_) {
    if (c.phase != Phase::kIdle || !c.known || c.ready.empty()) continue;
    std::vector<std::string> batches;
    for (const auto& f : c.ready) {
      if (f.retry) batches.push_back(f.item.ref.batch);
    }
    if (havePending(batches)) names.push_back(name);
  }
  const size_t limit = options_.max_batch_bytes;
  tasks::v2::Builder b(layout_);
  std::vector<std::string> in_multi;
  std::set<std::string> batches;  // pending states written by this flush's multis
  for (const auto& name : names) {
    ChunkState& c = chunks_.at(name);
    // Near the limit, keep what the multi was before this chunk, to send that if it overflows.
    std::optional<std::pair<tasks::v2::Builder, std::set<std::string>>> before;
    if (!in_multi.empty() && b.bytes() > limit / 2) before.emplace(b, batches);
    if (!addTo(b, name, c, batches)) continue;  // next multi
    if (before && b.bytes() > limit) {
      b = std::move(before->first);
      batches = std::move(before->second);
      send(std::move(b), std::move(in_multi), batches);
      b = tasks::v2::Builder(layout_);
      in_multi.clear();
      if (!addTo(b, name, c, batches)) continue;
    }
    in_multi.push_back(name);
  }
  if (!in_multi.empty()) send(std::move(b), std::move(in_multi), std::move(batches));
}

void ChunkCommits::send(tasks::v2::Builder b, std::vector<std::string> chunks,
                        std::set<std::string> batches) {
  for (const auto& name : chunks) {
    ChunkState& c = chunks_.at(name);
    c.flight = std::move(c.ready);
    c.ready.clear();
    c.flight_version = c.version;
    c.phase = Phase::kInFlight;
  }
  auto m = std::move(b).finish();
  auto post = hooks_.post;
  // Tasks per commit multi is what the per-task request budget rests on (docs/PERFORMANCE.md).
  static auto& multis = base::metrics().counter(
      "drover_worker_commit_multis_total",
      "Commit multis this node's worker sent (each holds the outcomes of one or more chunks)");
  multis.inc();
  ++multis_inflight_;
  coord_.multi(std::move(m.ops))
      .then([this, post, chunks = std::move(chunks), batches = std::move(batches),
             decoder = std::move(m.decoder)](const MultiResult& r) mutable {
        post([this, chunks = std::move(chunks), batches = std::move(batches),
              decoder = std::move(decoder), r] { onSent(chunks, batches, decoder, r); });
      });
}

void ChunkCommits::onSent(const std::vector<std::string>& chunks,
                          const std::set<std::string>& batches, const tasks::v2::Decoder& decoder,
                          const MultiResult& r) {
  --multis_inflight_;
  if (halted_) return;
  // A pending state read for retries is used once (the leader writes it all the time); the
  // batches of a flush are written by one multi each, so none is in use by another.
  for (const auto& batch : batches) pending_.erase(batch);
  if (r) {
    for (const auto& name : chunks) {
      auto it = chunks_.find(name);
      if (it != chunks_.end()) landed(name, it->second, decoder, *r);
    }
    flushSoon();
    return;
  }
  const coord::Error& e = r.error();
  if (e.sessionLost() || e.code() == Code::kClosing) {
    hooks_.session_lost(e);
    return;
  }
  auto role = decoder.failed(e);
  bool fenced = role && role->part == tasks::v2::Part::kChunk &&
                (e.code() == Code::kBadVersion || e.code() == Code::kNoNode);
  for (const auto& name : chunks) {
    auto it = chunks_.find(name);
    if (it == chunks_.end()) continue;
    ChunkState& c = it->second;
    if (fenced && c.path == role->key) {
      // The leader or the API rewrote it: read it again; what it still holds goes again.
      requeueFlight(c);
      c.phase = Phase::kStale;
      hooks_.reread(name);
    } else if (!role && e.outcomeUnknown()) {
      c.phase = Phase::kSettling;  // the chunk tells whether the multi landed
      hooks_.reread(name);
    } else if (fenced || (role && role->part == tasks::v2::Part::kPending)) {
      requeueFlight(c);  // not this chunk's fault: it goes again (a pending state is re-read)
    } else if (++c.tries <= kMaxOddRetries) {
      spdlog::warn("worker {}: commit of chunk {} failed: {}; retrying", worker_id_, name,
                   e.toString());
      requeueFlight(c);
      hooks_.post_after(options_.zk_backoff.delay(c.tries), [this] { flushSoon(); });
      continue;
    } else {
      spdlog::error("worker {}: commit of chunk {} failed: {}; giving up (the leader requeues)",
                    worker_id_, name, e.toString());
      for (const auto& f : c.flight) hooks_.done(f, false);
      c.flight.clear();
      c.phase = Phase::kIdle;
      c.tries = 0;
    }
  }
  flushSoon();
}

void ChunkCommits::landed(const std::string& name, ChunkState& c, const tasks::v2::Decoder& decoder,
                          const std::vector<coord::OpResult>& results) {
  std::vector<tasks::TaskRef> refs;
  for (const auto& f : c.flight) {
    refs.push_back(f.item.ref);
    hooks_.done(f, true);
  }
  c.flight.clear();
  c.tries = 0;
  c.phase = Phase::kIdle;
  auto rest = std::make_shared<tasks::Chunk>(c.content ? c.content->without(refs) : tasks::Chunk{});
  if (rest->items.empty()) {
    // Deleted: nothing more can be committed into it.
    for (const auto& f : c.ready) hooks_.done(f, false);
    chunks_.erase(name);
    return;
  }
  if (const auto* op = decoder.result(results, tasks::v2::Part::kChunk, c.path)) {
    c.version = op->stat.version;
  } else {
    c.known = false;  // cannot happen: the multi wrote it; read it again to be sure
    hooks_.reread(name);
  }
  c.content = std::move(rest);
}

}  // namespace drover::worker

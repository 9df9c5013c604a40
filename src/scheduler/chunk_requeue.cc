#include "scheduler/chunk_requeue.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <utility>

#include "base/clock.h"

namespace drover::scheduler {

using coord::Code;
using coord::Node;
using coord::Result;

ChunkRequeue::ChunkRequeue(const LeaderContext& ctx, PendingTracker& pending,
                           WorkerTracker& workers, PendingTracker::Wall wall,
                           std::chrono::milliseconds orphan_dir_grace,
                           std::function<void()> changed)
    : ctx_(ctx),
      pending_(pending),
      workers_(workers),
      wall_(std::move(wall)),
      orphan_dir_grace_(orphan_dir_grace),
      changed_(std::move(changed)) {}

// --- Requeue of a dead worker ---

void ChunkRequeue::requeueWorker(const std::string& w) {
  auto [it, fresh] = passes_.try_emplace(w, false);
  if (!fresh) {
    it->second = true;  // again once the current pass ends
    return;
  }
  clean_[w] = true;
  listChunks(w);
}

void ChunkRequeue::listChunks(const std::string& w) {
  ctx_.coord.children(ctx_.layout.assignmentsOf(w), nullptr)
      .then([this, w, post = ctx_.post](const Result<std::vector<std::string>>& r) {
        post([this, w, r] {
          if (!ctx_.active()) return;
          if (!r) {
            if (r.error().code() == Code::kNoNode) {  // nothing left
              cleared_.insert(w);
              return passDone(w, false);
            }
            ctx_.on_read_error(r.error(), [this, w] { listChunks(w); });
            return;
          }
          if (r->empty()) return passDone(w, true);
          auto left = std::make_shared<size_t>(r->size());
          for (const auto& name : *r) readChunk(w, name, left);
        });
      });
}

void ChunkRequeue::readChunk(const std::string& w, const std::string& name,
                             std::shared_ptr<size_t> left) {
  ctx_.coord.get(ctx_.layout.chunk(w, name), nullptr)
      .then([this, w, name, left, post = ctx_.post](const Result<Node>& r) {
        post([this, w, name, left, r] {
          if (!ctx_.active()) return;
          if (!r) {
            if (r.error().code() == Code::kNoNode) return chunkDone(w, left, true);
            ctx_.on_read_error(r.error(), [this, w, name, left] { readChunk(w, name, left); });
            return;
          }
          auto chunk = tasks::decodeChunk(r->data);
          if (!chunk) {
            spdlog::error("scheduler: unreadable chunk {}/{}; left in place", w, name);
            return chunkDone(w, left, false);
          }
          auto move = std::make_shared<Move>();
          move->requeue = true;
          move->worker = w;
          move->name = name;
          move->version = r->stat.version;
          move->taken = chunk->items;
          move->chunk = std::move(*chunk);
          move->done = [this, w, left](bool ok) { chunkDone(w, left, ok); };
          start(move);
        });
      });
}

void ChunkRequeue::chunkDone(const std::string& w, std::shared_ptr<size_t> left, bool ok) {
  if (!ok) clean_[w] = false;
  if (--*left == 0) passDone(w, clean_[w]);
}

void ChunkRequeue::passDone(const std::string& w, bool clean) {
  bool again = passes_[w];
  passes_.erase(w);
  clean_.erase(w);
  if (!ctx_.active()) return;
  if (again) return requeueWorker(w);
  if (clean) return removeFolder(w);
}

void ChunkRequeue::removeFolder(const std::string& w) {
  if (workers_.find(w)) return;  // registered again meanwhile: its folder stays
  std::string folder = ctx_.layout.assignmentsOf(w);
  ctx_.coord.exists(folder, nullptr)
      .then([this, w, folder, post = ctx_.post](const Result<std::optional<coord::Stat>>& r) {
        post([this, w, folder, r] {
          if (!ctx_.active() || !r || !*r || workers_.find(w)) return;
          int64_t age = base::wallMillis() - (*r)->ctime_ms;
          if (age < orphan_dir_grace_.count()) {
            // Maybe a worker that made its folder and is about to register: look again later.
            ctx_.later(orphan_dir_grace_ - std::chrono::milliseconds(age),
                       [this] { workers_.listFolders(); });
            return;
          }
          ctx_.coord.remove(folder, (*r)->version)
              .then([this, w, post = ctx_.post](const coord::Status& s) {
                post([this, w, s] {
                  if (s || s.error().code() == Code::kNoNode) cleared_.insert(w);
                  if (!s && s.error().code() == Code::kNotEmpty && ctx_.active()) {
                    requeueWorker(w);  // a chunk of an assign multi in flight landed
                  }
                });
              });
        });
      });
}

// --- Reclaim ---

void ChunkRequeue::reclaim(const std::string& w, const std::string& name, int32_t version,
                           const tasks::Chunk& chunk, const std::vector<tasks::TaskRef>& refs) {
  auto move = std::make_shared<Move>();
  move->requeue = false;
  move->worker = w;
  move->name = name;
  move->version = version;
  move->chunk = chunk;
  for (const auto& ref : refs) {
    if (const auto* item = chunk.find(ref)) move->taken.push_back(*item);
  }
  if (move->taken.empty()) return;
  ++reclaims_;
  move->done = [this, w, name](bool ok) {
    --reclaims_;
    if (!ok) workers_.reread(w, name);
    changed_();
  };
  start(move);
}

// --- The move: read the pending states and records, then one fenced multi ---

void ChunkRequeue::start(std::shared_ptr<Move> move) {
  move->states.clear();
  move->failed = false;
  std::set<std::string> batches;
  for (const auto& item : move->taken) batches.insert(item.ref.batch);
  if (batches.empty()) return send(move);  // an empty chunk: only deleted
  move->outstanding = 2 * batches.size();
  for (const auto& batch : batches) {
    ctx_.coord.get(ctx_.layout.pending(batch), nullptr)
        .then([this, move, batch, post = ctx_.post](const Result<Node>& r) {
          post([this, move, batch, r] {
            auto state = r ? tasks::decodePending(r->data) : std::nullopt;
            if (!state) {
              // NoNode breaks the token rule (the chunk holds tokens of a batch with no pending
              // state): left for an operator. Other errors: retried with the pass.
              if (!r && r.error().sessionLost()) ctx_.fence("session expired");
              spdlog::error("scheduler: cannot read the pending state of batch {} ({})", batch,
                            r ? "unreadable" : r.error().toString());
              move->failed = true;
            } else {
              move->states[batch] = {r->stat.version, std::move(*state)};
            }
            readDone(move);
          });
        });
    pending_.withRecord(batch, [this, move, batch](std::shared_ptr<const PackedRecord> rec) {
      move->records[batch] = std::move(rec);
      readDone(move);
    });
  }
}

void ChunkRequeue::readDone(const std::shared_ptr<Move>& move) {
  if (--move->outstanding > 0) return;
  if (!ctx_.active()) return;
  if (move->failed) return move->done(false);
  send(move);
}

void ChunkRequeue::send(const std::shared_ptr<Move>& move) {
  const int64_t now = wall_();
  const std::string lost = fmt::format("worker {} was lost", move->worker);
  std::map<std::string, tasks::ResultRecord> failed;
  std::vector<tasks::ChunkItem> moved;
  std::vector<tasks::TaskRef> refs;
  bool callbacks = false;  // a task that fails here has a callback_url (or its spec is unknown)
  for (const auto& item : move->taken) {
    auto& state = move->states[item.ref.batch].second;
    refs.push_back(item.ref);
    if (!move->requeue) {
      state.wait(item.ref.index, tasks::Waiting{item.attempt, 0, item.error});
      moved.push_back(item);
      continue;
    }
    // What the requeue reads of the spec: from the chunk's inline copy, else from the record.
    std::optional<int> max_attempts;
    bool callback = true;  // unknown counts as one
    if (item.spec) {
      max_attempts = item.spec->max_attempts;
      callback = !item.spec->callback_url.empty();
    } else if (const auto& record = move->records[item.ref.batch];
               record && item.ref.index < record->size()) {
      max_attempts = record->maxAttempts(item.ref.index);
      callback = record->hasCallback(item.ref.index);
    }
    if (item.attempt >= max_attempts.value_or(1)) {
      callbacks = callbacks || callback;
      state.erase(item.ref.index);
      tasks::Outcome o;
      o.index = item.ref.index;
      if (item.id != tasks::generatedId(item.ref)) o.id = item.id;
      o.state = tasks::State::kFailed;
      o.attempt = item.attempt;
      o.worker = move->worker;
      o.finished_at = now;
      o.error = lost;
      failed[item.ref.batch].outcomes.push_back(std::move(o));
    } else {
      state.wait(item.ref.index, tasks::Waiting{item.attempt + 1, 0, lost});
      moved.push_back(item);
      // The lost attempt is history: an outcome `pending` (it waits again) in the same multi.
      tasks::Outcome o;
      o.index = item.ref.index;
      if (item.id != tasks::generatedId(item.ref)) o.id = item.id;
      o.state = tasks::State::kPending;
      o.attempt = item.attempt;
      o.worker = move->worker;
      o.finished_at = now;
      o.error = lost;
      failed[item.ref.batch].outcomes.push_back(std::move(o));
    }
  }
  std::vector<tasks::v2::PendingWrite> back;
  for (auto& [batch, vs] : move->states) {
    if (move->requeue) vs.second.forgetChunk(move->worker, move->name);  // the chunk goes
    back.push_back(tasks::v2::PendingWrite{batch, vs.first, vs.second});
  }
  tasks::v2::ChunkWrite chunk{move->worker, move->name, move->version,
                              move->requeue ? tasks::Chunk{} : move->chunk.without(refs)};
  auto builder = tasks::v2::Builder::fenced(ctx_.layout, ctx_.epoch);
  if (move->requeue) {
    builder.requeue(chunk, back, moved, failed, now);
    builder.callbacks(callbacks);
  } else {
    builder.reclaim(chunk, moved, back, now);
  }
  auto multi = std::move(builder).finish();
  for (const auto& w : back) pending_.begin(w.batch);
  auto decoder = std::make_shared<tasks::v2::Decoder>(std::move(multi.decoder));
  ctx_.coord.multi(std::move(multi.ops))
      .then([this, move, back, chunk, decoder, failed_n = move->taken.size() - moved.size(),
             moved_n = moved.size(),
             post = ctx_.post](const Result<std::vector<coord::OpResult>>& r) {
        post([this, move, back, chunk, decoder, failed_n, moved_n, r] {
          for (const auto& w : back) pending_.end(w.batch);
          if (!ctx_.active()) return;
          if (r) {
            for (const auto& w : back) pending_.wrote(w.batch, w.version, w.after);
            if (move->requeue) {
              requeued_ += moved_n;
              failed_ += failed_n;
            } else {
              reclaimed_ += moved_n;
              workers_.rewrote(move->worker, move->name, move->version, chunk.remaining);
            }
            move->done(true);
            return;
          }
          const coord::Error& e = r.error();
          auto role = decoder->failed(e);
          if (ctx_.fencedBy(e, role)) return;
          if (role && role->part == tasks::v2::Part::kPending) {
            pending_.reread(role->key);
            start(move);  // someone else wrote the batch: read again, decide again
            return;
          }
          spdlog::info("scheduler: moving chunk {}/{} back failed ({}); retrying later",
                       move->worker, move->name, e.toString());
          if (move->requeue) {
            ctx_.later(ctx_.retry_delay(), [this, move] {
              if (ctx_.active()) requeueWorker(move->worker);
            });
          }
          move->done(false);
        });
      });
}

}  // namespace drover::scheduler

#include "scheduler/requeue.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/clock.h"
#include "tasks/transitions.h"

namespace drover::scheduler {

using coord::Code;
using coord::Error;
using coord::Node;
using coord::OpResult;
using coord::Result;

// The join of the reads and writes that move one dead worker's assignments back.
struct Requeuer::RequeueState {
  std::string worker;
  size_t outstanding = 0;  // tasks whose reads or multi have not finished
  bool retry = false;      // something was ambiguous: run the pass again later
  std::map<std::string, std::optional<Result<Node>>> assignment;
  std::map<std::string, std::optional<Result<Node>>> status;
};

Requeuer::Requeuer(const LeaderContext& ctx, std::chrono::milliseconds orphan_dir_grace,
                   std::function<bool(const std::string&)> alive)
    : ctx_(ctx), orphan_dir_grace_(orphan_dir_grace), alive_(std::move(alive)) {}

void Requeuer::requeueWorker(const std::string& w) {
  if (!ctx_.active()) return;
  if (auto it = requeuing_.find(w); it != requeuing_.end()) {
    it->second = true;  // a pass is running: run another once it ends
    return;
  }
  requeuing_[w] = false;
  auto state = std::make_shared<RequeueState>();
  state->worker = w;
  ctx_.coord.children(ctx_.layout.assignmentsOf(w), nullptr)
      .then([post = ctx_.post, this, state](const Result<std::vector<std::string>>& r) {
        post([this, state, r] {
          if (!ctx_.active()) return;
          const std::string& w = state->worker;
          if (!r) {
            if (r.error().code() == Code::kNoNode) {
              requeueDone(state);
              return;
            }
            requeuing_.erase(w);
            ctx_.on_read_error(r.error(), [this, w] { requeueWorker(w); });
            return;
          }
          if (r->empty()) {
            requeueDone(state);
            return;
          }
          state->outstanding = r->size();
          // Pipelined: every read is issued before any answer is looked at.
          for (const auto& id : *r) {
            state->assignment[id];
            state->status[id];
            auto on_read = [this, state, id] {
              const auto& a = state->assignment[id];
              const auto& s = state->status[id];
              if (a && s) requeueTask(state, id, *a, *s);
            };
            ctx_.coord.get(ctx_.layout.assignment(w, id), nullptr)
                .then([post = ctx_.post, this, state, id, on_read](const Result<Node>& r) {
                  post([state, id, r, on_read] {
                    state->assignment[id] = r;
                    on_read();
                  });
                });
            ctx_.coord.get(ctx_.layout.status(id), nullptr)
                .then([post = ctx_.post, this, state, id, on_read](const Result<Node>& r) {
                  post([state, id, r, on_read] {
                    state->status[id] = r;
                    on_read();
                  });
                });
          }
        });
      });
}

void Requeuer::requeueTask(const std::shared_ptr<RequeueState>& state, const std::string& id,
                           const Result<Node>& a_read, const Result<Node>& s_read) {
  if (!ctx_.active()) return;
  const std::string& w = state->worker;
  auto finish = [this, state] {
    if (--state->outstanding == 0) requeueDone(state);
  };
  if (!a_read) {
    if (a_read.error().code() != Code::kNoNode) {
      if (a_read.error().sessionLost()) return ctx_.fence("session expired");
      state->retry = true;
    }
    return finish();
  }
  if (!s_read && s_read.error().code() != Code::kNoNode) {
    if (s_read.error().sessionLost()) return ctx_.fence("session expired");
    state->retry = true;
    return finish();
  }
  auto a_json = tasks::parseJson(a_read->data);
  auto assignment = a_json ? tasks::assignmentFromJson(*a_json) : std::nullopt;
  std::optional<tasks::TaskStatus> status;
  if (s_read) {
    auto s_json = tasks::parseJson(s_read->data);
    if (s_json) status = tasks::statusFromJson(*s_json);
  }
  if (!assignment && status) assignment = tasks::Assignment{status->spec, status->attempts};
  if (!assignment) {
    spdlog::error("scheduler: unreadable assignment {}/{}; left in place", w, id);
    return finish();
  }
  if (!status) {
    status.emplace();
    status->spec = assignment->spec;
  }

  bool requeue = false;
  bool failed = false;
  std::optional<tasks::TaskStatus> next;
  std::optional<tasks::Job> retry;
  const int64_t now = base::wallMillis();
  if (!tasks::isTerminal(status->state)) {  // else a finished task's leftover: the token goes
    next = *status;
    next->attempts = assignment->attempt;
    next->error = fmt::format("worker {} was lost", w);
    if (assignment->attempt >= assignment->spec.max_attempts) {
      failed = true;
      next->state = tasks::State::kFailed;
      next->worker = w;
      next->finished_at = now;
    } else {
      requeue = true;
      retry =
          tasks::Job{assignment->spec, assignment->attempt + 1, 0, next->submitted_at, next->error};
      next->state = tasks::State::kPending;
      next->worker.clear();
    }
  }
  tasks::Txn txn = tasks::Txn::fenced(ctx_.layout, ctx_.epoch);
  txn.add(tasks::requeue(ctx_.layout, w, id, a_read->stat.version, next, retry, now));
  auto t = std::move(txn).finish();
  ctx_.coord.multi(std::move(t.ops))
      .then([post = ctx_.post, this, state, id, requeue, failed, finish,
             decoder = std::move(t.decoder)](const Result<std::vector<OpResult>>& r) {
        post([this, state, id, requeue, failed, finish, decoder, r] {
          if (!ctx_.active()) return;
          if (r) {
            if (requeue) ++requeued_;
            if (failed) ++failed_;
            return finish();
          }
          const Error& e = r.error();
          const auto step = decoder.failed(e);
          if (step && step->step == tasks::Step::kEpoch) return ctx_.fence("epoch moved");
          if (e.sessionLost()) return ctx_.fence("session expired");
          if (step && step->step == tasks::Step::kToken) {
            // The assignment changed or went: the worker committed or a client cancelled.
          } else if (step) {
            spdlog::error("scheduler: requeue of {} from {} failed: {}", id, state->worker,
                          e.toString());
          } else {
            state->retry = true;  // ambiguous: the next pass re-reads and sees
          }
          finish();
        });
      });
}

void Requeuer::requeueDone(const std::shared_ptr<RequeueState>& state) {
  const std::string w = state->worker;
  bool redo = requeuing_[w] || state->retry;
  requeuing_.erase(w);
  if (!ctx_.active()) return;
  if (redo) {
    ctx_.later(state->retry ? ctx_.retry_delay() : base::Duration::zero(),
               [this, w] { requeueWorker(w); });
    return;
  }
  removeOrphanDir(w);
}

void Requeuer::removeOrphanDir(const std::string& w) {
  std::string dir = ctx_.layout.assignmentsOf(w);
  ctx_.coord.get(dir, nullptr).then([post = ctx_.post, this, w, dir](const Result<Node>& r) {
    post([this, w, dir, r] {
      if (!ctx_.active() || !r || alive_(w)) return;
      if (r->stat.num_children != 0) return;
      int64_t age = base::wallMillis() - r->stat.ctime_ms;
      if (age < orphan_dir_grace_.count()) return;  // the next sweep looks again
      // Not fenced: removing an empty folder consumes no token. NotEmpty/NoNode are fine.
      ctx_.coord.remove(dir, coord::kAnyVersion).then([](const coord::Status&) {});
    });
  });
}

}  // namespace drover::scheduler

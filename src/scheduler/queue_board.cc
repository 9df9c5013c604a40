#include "scheduler/queue_board.h"

#include <spdlog/spdlog.h>

#include "tasks/task.h"

namespace drover::scheduler {

using coord::Code;
using coord::Node;
using coord::Result;

QueueBoard::QueueBoard(const LeaderContext& ctx, std::function<void()> changed)
    : ctx_(ctx), changed_(std::move(changed)) {}

void QueueBoard::follow() {
  listQueues();
  listDraining();
}

const QueueSettings& QueueBoard::settings(const std::string& queue) const {
  static const QueueSettings kDefault;
  auto it = queues_.find(queue);
  return it == queues_.end() ? kDefault : it->second;
}

int QueueBoard::held(const std::string& queue) const {
  auto it = held_count_.find(queue);
  return it == held_count_.end() ? 0 : it->second;
}

bool QueueBoard::open(const std::string& queue, int extra) const {
  const QueueSettings& s = settings(queue);
  if (s.paused) return false;
  if (s.max_running <= 0) return true;
  if (unknown_ > 0) return false;  // not every held task's queue is known yet
  return held(queue) + extra < s.max_running;
}

bool QueueBoard::open(const std::string& queue, int extra,
                      const std::optional<QueueHeld>& held) const {
  const QueueSettings& s = settings(queue);
  if (s.paused) return false;
  if (s.max_running <= 0) return true;
  if (!held) return false;
  auto it = held->counts.find(queue);
  int n = (it == held->counts.end() ? 0 : it->second) + held->unknown;
  return n + extra < s.max_running;
}

bool QueueBoard::limited() const {
  for (const auto& [name, q] : queues_) {
    if (q.max_running > 0) return true;
  }
  return false;
}

void QueueBoard::assigned(const std::string& id, const std::string& queue) {
  if (!limited()) return;  // counts matter only for a queue with a limit (see limitsChanged)
  inflight_[id] = queue;
  queue_of_[id] = queue;
  ++held_count_[queue];  // recount() would find the same; this runs once per task assigned
}

void QueueBoard::settled(const std::vector<std::string>& ids) {
  if (inflight_.empty()) return;
  for (const auto& id : ids) {
    inflight_.erase(id);
    bool listed = false;
    for (const auto& [w, held] : held_by_) listed |= held.count(id) != 0;
    if (!listed) queue_of_.erase(id);
  }
  recount();
}

void QueueBoard::held(const std::string& w, const std::set<std::string>& ids) {
  auto& mine = held_by_[w];
  if (!limited()) {
    // Nothing to count: keep only what a limit set later needs to start from.
    mine = ids;
    return;
  }
  for (const auto& id : mine) {
    if (!ids.count(id)) queue_of_.erase(id);  // finished or moved: forget it
  }
  mine = ids;
  for (const auto& id : ids) {
    if (!queue_of_.count(id) && !lookups_.count(id) && !inflight_.count(id)) learn(w, id);
  }
  recount();
  changed_();
}

void QueueBoard::forget(const std::string& w) {
  auto it = held_by_.find(w);
  if (it == held_by_.end()) return;
  for (const auto& id : it->second) queue_of_.erase(id);
  held_by_.erase(it);
  recount();
  changed_();
}

void QueueBoard::limitsAppeared() {
  // Held tasks were not followed while no queue had a limit: read the queue of each now (until
  // every read is in, limited queues count as full).
  for (const auto& [w, ids] : held_by_) {
    for (const auto& id : ids) {
      if (!queue_of_.count(id) && !lookups_.count(id)) learn(w, id);
    }
  }
  recount();
}

void QueueBoard::recount() {
  held_count_.clear();
  unknown_ = 0;
  for (const auto& [w, ids] : held_by_) {
    for (const auto& id : ids) {
      auto q = queue_of_.find(id);
      if (q != queue_of_.end()) {
        ++held_count_[q->second];
      } else {
        ++unknown_;
      }
    }
  }
  for (const auto& [id, queue] : inflight_) {
    bool listed = false;
    for (const auto& [w, ids] : held_by_) listed |= ids.count(id) != 0;
    if (!listed) ++held_count_[queue];  // else counted above
  }
}

void QueueBoard::learn(const std::string& w, const std::string& id) {
  lookups_.insert(id);
  ctx_.coord.get(ctx_.layout.assignment(w, id), nullptr)
      .then([this, post = ctx_.post, w, id](const Result<Node>& r) {
        post([this, w, id, r] {
          lookups_.erase(id);
          if (!ctx_.active()) return;
          if (r) {
            auto j = tasks::parseJson(r->data);
            auto a = j ? tasks::assignmentFromJson(*j) : std::nullopt;
            // Unreadable: counted in no queue (it cannot be told apart); logged once.
            if (a) {
              queue_of_[id] = a->spec.queue;
            } else {
              spdlog::warn("scheduler: assignment {}/{} is unreadable; not counted in a queue", w,
                           id);
              queue_of_[id] = "";
            }
          } else if (r.error().code() != Code::kNoNode) {
            ctx_.on_read_error(r.error(), [this, w, id] {
              auto held = held_by_.find(w);
              if (held != held_by_.end() && held->second.count(id) && !queue_of_.count(id) &&
                  !lookups_.count(id)) {
                learn(w, id);
              }
            });
          }
          recount();
          changed_();
        });
      });
}

void QueueBoard::followChildren(const std::string& path, bool* armed,
                                const std::function<void(const std::vector<std::string>&)>& apply) {
  coord::Watcher watcher;
  if (!*armed) {
    *armed = true;
    watcher = [this, post = ctx_.post, path, armed, apply](const coord::WatchEvent&) {
      post([this, path, armed, apply] {
        *armed = false;
        if (ctx_.active()) followChildren(path, armed, apply);
      });
    };
  }
  const bool watched = static_cast<bool>(watcher);
  ctx_.coord.children(path, std::move(watcher))
      .then([this, post = ctx_.post, path, armed, apply,
             watched](const Result<std::vector<std::string>>& r) {
        post([this, r, path, armed, apply, watched] {
          if (!ctx_.active()) return;
          if (!r) {
            if (watched) *armed = false;  // a failed read sets no watch
            // NoNode: the API makes the folder with its first write; the periodic reconcile
            // (follow()) lists it again.
            if (r.error().code() == Code::kNoNode) return;
            ctx_.on_read_error(r.error(),
                               [this, path, armed, apply] { followChildren(path, armed, apply); });
            return;
          }
          apply(*r);
        });
      });
}

void QueueBoard::listQueues() {
  followChildren(ctx_.layout.queues(), &queues_watch_,
                 [this](const std::vector<std::string>& listed) {
                   std::set<std::string> names(listed.begin(), listed.end());
                   for (auto it = queues_.begin(); it != queues_.end();) {
                     it = names.count(it->first) ? std::next(it) : queues_.erase(it);
                   }
                   for (const auto& name : names) loadQueue(name);
                   changed_();
                 });
}

void QueueBoard::loadQueue(const std::string& name) {
  coord::Watcher watcher;
  if (!queue_watches_.count(name)) {
    queue_watches_.insert(name);
    watcher = [this, post = ctx_.post, name](const coord::WatchEvent&) {
      post([this, name] {
        queue_watches_.erase(name);
        if (ctx_.active()) loadQueue(name);
      });
    };
  }
  ctx_.coord.get(ctx_.layout.queue(name), std::move(watcher))
      .then([this, post = ctx_.post, name](const Result<Node>& r) {
        post([this, name, r] {
          if (!ctx_.active()) return;
          if (!r) {
            if (r.error().code() == Code::kNoNode) {
              queues_.erase(name);
              queue_watches_.erase(name);
            } else {
              ctx_.on_read_error(r.error(), [this, name] { loadQueue(name); });
            }
            changed_();
            return;
          }
          auto j = tasks::parseJson(r->data);
          auto s = j ? queueSettingsFromJson(*j) : std::nullopt;
          if (!s) {
            spdlog::error("scheduler: unreadable settings of queue {}; ignoring them", name);
            queues_.erase(name);
          } else {
            bool was_limited = limited();
            queues_[name] = *s;
            if (!was_limited && limited()) limitsAppeared();
          }
          changed_();
        });
      });
}

void QueueBoard::listDraining() {
  followChildren(ctx_.layout.draining(), &draining_watch_,
                 [this](const std::vector<std::string>& listed) {
                   draining_ = std::set<std::string>(listed.begin(), listed.end());
                   changed_();
                 });
}

}  // namespace drover::scheduler

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
            queues_[name] = *s;
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

#include "recipes/membership.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

#include "coord/paths.h"

namespace drover::recipes {

Membership::Membership(coord::Coordination& coord, std::string dir, base::Executor& executor)
    : coord_(coord), dir_(std::move(dir)), executor_(executor) {
  // Watches of an expired session never fire: list again once a session is (re)connected.
  std::weak_ptr<bool> weak = alive_;
  session_listener_ = coord_.addSessionListener([this, weak](const coord::SessionEvent& e) {
    if (e.state != coord::SessionState::kConnected) return;
    if (auto a = weak.lock(); a && *a) {
      executor_.post([this, weak] {
        if (auto a2 = weak.lock(); a2 && *a2) list();
      });
    }
  });
}

Membership::~Membership() {
  coord_.removeSessionListener(session_listener_);
  stopWatching();
}

coord::Status Membership::join(const std::string& id, const std::string& data,
                               std::vector<coord::Op> extra) {
  std::string path = coord::join(dir_, id);
  std::vector<coord::Op> ops;
  ops.emplace_back(coord::CreateOp{path, data, coord::CreateMode::kEphemeral, {}});
  for (auto& op : extra) ops.push_back(std::move(op));
  for (int attempt = 0; attempt < 20; ++attempt) {
    auto r = coord_.multi(ops).get();
    if (r) {
      id_ = id;
      return {};
    }
    if (!r.error().outcomeUnknown()) return tl::unexpected(r.error());
    // Connection loss: did the multi land? Our node with our session as owner says it did.
    auto node = coord_.exists(path, nullptr).get();
    if (node && node->has_value() && (*node)->ephemeral_owner == coord_.session().session_id) {
      id_ = id;
      return {};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50 * (attempt + 1)));
  }
  return coord::fail(coord::Code::kConnectionLoss, "could not register " + path);
}

coord::Status Membership::leave() {
  if (id_.empty()) return {};
  auto r = coord_.remove(coord::join(dir_, id_), coord::kAnyVersion).get();
  id_.clear();
  if (!r && r.error().code() != coord::Code::kNoNode) return r;
  return {};
}

void Membership::watch(std::function<void(const std::vector<std::string>&)> on_change) {
  *alive_ = true;
  executor_.post([this, on_change = std::move(on_change), alive = alive_]() mutable {
    if (!*alive) return;
    on_change_ = std::move(on_change);
    list();
  });
}

void Membership::stopWatching() {
  *alive_ = false;
  on_change_ = nullptr;
}

void Membership::list() {
  if (!on_change_) return;
  std::weak_ptr<bool> weak = alive_;
  auto f = coord_.children(dir_, [this, weak](const coord::WatchEvent&) {
    if (auto alive = weak.lock(); alive && *alive) {
      executor_.post([this, weak] {
        if (auto a = weak.lock(); a && *a) list();
      });
    }
  });
  f.then([this, weak](const coord::Result<std::vector<std::string>>& r) {
    auto alive = weak.lock();
    if (!alive || !*alive) return;
    if (!r) {
      spdlog::debug("membership: listing {} failed: {}", dir_, r.error().toString());
      executor_.postAfter(std::chrono::milliseconds(200), [this, weak] {
        if (auto a = weak.lock(); a && *a) list();
      });
      return;
    }
    auto ids = *r;
    std::sort(ids.begin(), ids.end());
    executor_.post([this, weak, ids = std::move(ids)] {
      if (auto a = weak.lock(); a && *a && on_change_) on_change_(ids);
    });
  });
}

}  // namespace drover::recipes

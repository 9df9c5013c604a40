#include "recipes/election.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <thread>

#include "base/ids.h"
#include "coord/paths.h"

namespace drover::recipes {

using coord::Code;

std::vector<coord::Op> fenced(const std::string& epoch_path, int32_t epoch,
                              std::vector<coord::Op> ops) {
  std::vector<coord::Op> out;
  out.reserve(ops.size() + 1);
  out.emplace_back(coord::CheckOp{epoch_path, epoch});
  for (auto& op : ops) out.push_back(std::move(op));
  return out;
}

LeaderElection::LeaderElection(coord::Coordination& coord, ElectionOptions options,
                               Listener listener)
    : coord_(coord),
      options_(std::move(options)),
      listener_(std::move(listener)),
      guid_(base::randomHex(8)),
      executor_(std::make_shared<base::ThreadExecutor>("election")) {
  session_listener_ = coord_.addSessionListener(
      [this, weak = std::weak_ptr(executor_)](const coord::SessionEvent& e) {
        if (auto ex = weak.lock()) ex->post([this, e] { onSession(e); });
      });
}

LeaderElection::~LeaderElection() {
  stop();
  coord_.removeSessionListener(session_listener_);
  executor_->stop();
}

std::string LeaderElection::candidateNode() const {
  std::lock_guard lock(node_mu_);
  return node_copy_;
}

void LeaderElection::start() {
  executor_->post([this] {
    stopped_ = false;
    stand();
  });
}

void LeaderElection::stop() {
  std::promise<void> done;
  auto fut = done.get_future();
  executor_->post([this, &done] {
    if (!stopped_) {
      stopped_ = true;
      ++check_round_;
      if (leading_) {
        coord_
            .multi(fenced(options_.epoch_path, epoch_,
                          {coord::DeleteOp{options_.leader_path, coord::kAnyVersion}}))
            .get();
      }
      if (!node_.empty()) {
        coord_.remove(coord::join(options_.election_dir, node_), coord::kAnyVersion).get();
      }
      node_.clear();
      {
        std::lock_guard lock(node_mu_);
        node_copy_.clear();
      }
      if (leading_) lose("stopped", false);
    }
    done.set_value();
  });
  fut.wait_for(std::chrono::seconds(30));
}

void LeaderElection::stepDown(const std::string& reason, int32_t epoch) {
  executor_->post([this, reason, epoch] {
    if (stopped_ || !leading_) return;
    if (epoch >= 0 && epoch != epoch_) {
      spdlog::info("election: {} ignores a step-down for epoch {} (leads with epoch {})",
                   options_.candidate_id, epoch, epoch_.load());
      return;
    }
    lose(reason, true);
  });
}

// Creates our candidate node. A create that hit connection loss may have been applied: our guid
// in the name lets us find it again instead of leaving an orphan that would block the election.
void LeaderElection::stand() {
  if (stopped_ || !node_.empty()) return;
  auto session = coord_.session();
  if (session.state != coord::SessionState::kConnected) return;  // onSession() resumes us
  if (options_.candidate_for) options_.candidate_id = options_.candidate_for(session.generation);
  std::string prefix = "c_" + guid_ + "_";
  for (int attempt = 0; attempt < 50 && !stopped_; ++attempt) {
    auto created = coord_
                       .create(coord::CreateOp{coord::join(options_.election_dir, prefix),
                                               options_.candidate_id,
                                               coord::CreateMode::kEphemeralSequential,
                                               {}})
                       .get();
    std::string name;
    if (created) {
      name = std::string(coord::baseName(*created));
    } else if (created.error().outcomeUnknown()) {
      auto kids = coord_.children(options_.election_dir, nullptr).get();
      if (kids) {
        for (const auto& k : *kids) {
          if (k.rfind(prefix, 0) == 0) name = k;
        }
      }
      if (name.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
    } else {
      spdlog::warn("election: cannot create a candidate node: {}", created.error().toString());
      if (created.error().sessionLost() || created.error().code() == Code::kClosing) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    node_ = name;
    generation_ = session.generation;
    {
      std::lock_guard lock(node_mu_);
      node_copy_ = node_;
    }
    spdlog::info("election: {} stands as {}", options_.candidate_id, node_);
    check();
    return;
  }
}

void LeaderElection::check() {
  if (stopped_ || node_.empty() || leading_) return;
  uint64_t round = ++check_round_;
  auto kids = coord_.children(options_.election_dir, nullptr).get();
  if (!kids) {
    if (kids.error().retryable()) {
      executor_->postAfter(std::chrono::milliseconds(100), [this] { check(); });
    }
    return;  // session loss: onSession() takes over
  }
  std::vector<std::string> sorted = *kids;
  std::sort(sorted.begin(), sorted.end(), coord::bySequence);
  auto me = std::find(sorted.begin(), sorted.end(), node_);
  if (me == sorted.end()) {  // our node is gone (deleted by hand?): stand again
    node_.clear();
    stand();
    return;
  }
  // An older node of ours ahead of us (a step-down whose delete failed) would have us wait for
  // ourselves for as long as the session lives: it is ours (our guid), so delete it.
  const std::string mine = "c_" + guid_ + "_";
  for (auto it = sorted.begin(); it != me; ++it) {
    if (it->rfind(mine, 0) != 0) continue;
    spdlog::warn("election: {} deletes its own stale candidate node {}", options_.candidate_id,
                 *it);
    auto removed = coord_.remove(coord::join(options_.election_dir, *it), coord::kAnyVersion).get();
    if (!removed && removed.error().code() != Code::kNoNode) {
      executor_->postAfter(std::chrono::milliseconds(100), [this] { check(); });
      return;
    }
    executor_->post([this] { check(); });
    return;
  }
  if (me == sorted.begin()) {
    lead();
    return;
  }
  std::string predecessor = *(me - 1);
  auto st = coord_
                .exists(coord::join(options_.election_dir, predecessor),
                        [this, round, weak = std::weak_ptr(executor_)](const coord::WatchEvent&) {
                          auto ex = weak.lock();
                          if (!ex) return;
                          ex->post([this, round] {
                            if (listener_.on_watch) listener_.on_watch();
                            if (round == check_round_) check();
                          });
                        })
                .get();
  if (st && !st->has_value()) {
    executor_->post([this] { check(); });  // it went between the listing and the watch
  } else if (!st && st.error().retryable()) {
    executor_->postAfter(std::chrono::milliseconds(100), [this] { check(); });
  }
}

void LeaderElection::lead() {
  // Make sure our view is current before reading the epoch, then bump it with a versioned set:
  // the new version is our fencing token.
  coord_.sync(options_.epoch_path).get();
  for (int attempt = 0; attempt < 20 && !stopped_; ++attempt) {
    auto node = coord_.get(options_.epoch_path, nullptr).get();
    if (!node) {
      if (node.error().code() == Code::kNoNode) {
        coord_.create(coord::CreateOp{options_.epoch_path, "", coord::CreateMode::kPersistent, {}})
            .get();
        continue;
      }
      if (node.error().retryable()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      return;  // session loss: onSession() takes over
    }
    auto set = coord_.set(options_.epoch_path, options_.candidate_id, node->stat.version).get();
    if (!set) {
      if (set.error().code() == Code::kBadVersion) continue;
      if (set.error().outcomeUnknown()) {
        // Did our bump land? If the epoch now names us, its version is ours.
        auto again = coord_.get(options_.epoch_path, nullptr).get();
        if (again && again->data == options_.candidate_id &&
            again->stat.version == node->stat.version + 1) {
          set = again->stat;
        } else {
          continue;
        }
      } else {
        return;
      }
    }
    int32_t epoch = set->version;
    std::string data = options_.leader_data;
    if (auto pos = data.find("{epoch}"); pos != std::string::npos) {
      data.replace(pos, 7, std::to_string(epoch));
    }
    if (auto pos = data.find("{id}"); pos != std::string::npos) {
      data.replace(pos, 4, options_.candidate_id);
    }
    // A /leader left by the previous leader's still-open session is replaced, fenced.
    auto written =
        coord_
            .multi(fenced(
                options_.epoch_path, epoch,
                {coord::CreateOp{options_.leader_path, data, coord::CreateMode::kEphemeral, {}}}))
            .get();
    if (!written && written.error().code() == Code::kNodeExists) {
      coord_
          .multi(fenced(
              options_.epoch_path, epoch,
              {coord::DeleteOp{options_.leader_path, coord::kAnyVersion},
               coord::CreateOp{options_.leader_path, data, coord::CreateMode::kEphemeral, {}}}))
          .get();
    }
    epoch_ = epoch;
    leading_ = true;
    spdlog::info("election: {} leads with epoch {}", options_.candidate_id, epoch);
    if (listener_.on_elected) listener_.on_elected(epoch);
    return;
  }
}

void LeaderElection::lose(const std::string& reason, bool restand) {
  bool was = leading_.exchange(false);
  if (disconnect_timer_ != 0) {
    executor_->cancel(disconnect_timer_);
    disconnect_timer_ = 0;
  }
  if (was) {
    spdlog::warn("election: {} steps down: {}", options_.candidate_id, reason);
    if (listener_.on_lost) listener_.on_lost(reason);
  }
  if (!restand) return;
  // Give up our place: delete our node (if the session still lets us) and queue anew.
  if (!node_.empty()) {
    coord_.remove(coord::join(options_.election_dir, node_), coord::kAnyVersion).get();
    node_.clear();
    std::lock_guard lock(node_mu_);
    node_copy_.clear();
  }
  ++check_round_;
  stand();
}

// Re-checks after a reconnect within the same session: still the lowest candidate and the epoch
// still ours? Otherwise step down.
void LeaderElection::verify() {
  if (!leading_) return;
  auto kids = coord_.children(options_.election_dir, nullptr).get();
  auto epoch = coord_.get(options_.epoch_path, nullptr).get();
  if (!kids || !epoch) {
    if ((kids ? epoch.error() : kids.error()).retryable()) {
      executor_->postAfter(std::chrono::milliseconds(100), [this] { verify(); });
    }
    return;
  }
  auto lowest = std::min_element(kids->begin(), kids->end(), coord::bySequence);
  if (lowest == kids->end() || *lowest != node_ || epoch->stat.version != epoch_) {
    lose("leadership changed while disconnected", true);
  }
}

void LeaderElection::onSession(const coord::SessionEvent& e) {
  if (stopped_) return;
  switch (e.state) {
    case coord::SessionState::kDisconnected:
      if (leading_ && disconnect_timer_ == 0) {
        disconnect_timer_ = executor_->postAfter(options_.disconnect_bound, [this] {
          disconnect_timer_ = 0;
          if (coord_.session().state != coord::SessionState::kConnected) {
            // Our node cannot be deleted now; it goes with the session or on the re-stand.
            leading_ = false;
            spdlog::warn("election: {} steps down: disconnected past the bound",
                         options_.candidate_id);
            if (listener_.on_lost) listener_.on_lost("disconnected past the bound");
          }
        });
      }
      break;
    case coord::SessionState::kConnected:
      if (disconnect_timer_ != 0) {
        executor_->cancel(disconnect_timer_);
        disconnect_timer_ = 0;
      }
      if (e.generation != generation_ || node_.empty()) {
        node_.clear();  // a node of an old session is gone with it
        stand();
      } else if (leading_) {
        verify();
      } else {
        // Reconnected in the same session: we may have stepped down while away.
        check();
      }
      break;
    case coord::SessionState::kExpired:
      node_.clear();
      {
        std::lock_guard lock(node_mu_);
        node_copy_.clear();
      }
      ++check_round_;
      if (leading_) lose("session expired", false);
      break;
    default:
      break;
  }
}

}  // namespace drover::recipes

#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/executor.h"
#include "coord/coordination.h"

namespace drover::recipes {

// Group membership: each member is an ephemeral child of one directory, so it vanishes when the
// member's session ends (crash, pause past the timeout) or at once on a clean close.
class Membership {
 public:
  // `dir` must exist. `executor` runs the change callbacks and the re-listing after a watch
  // fires; it must outlive this object.
  Membership(coord::Coordination& coord, std::string dir, base::Executor& executor);
  ~Membership();

  // Registers `id` with `data`, together with `extra` ops in the same multi (for example the
  // member's own work directory), so the two appear at once or not at all. A create that hit
  // connection loss is settled by reading the node back: ours if its ephemeral owner is this
  // session. kNodeExists: the id is taken by a live session. Blocking.
  coord::Status join(const std::string& id, const std::string& data,
                     std::vector<coord::Op> extra = {});
  // Deletes this member's node. Blocking; a no-op when not joined.
  coord::Status leave();
  const std::string& id() const { return id_; }

  // Calls `on_change` with the sorted member ids now and after every change, on the executor,
  // until stopWatching(). Transient errors are retried.
  void watch(std::function<void(const std::vector<std::string>&)> on_change);
  void stopWatching();

 private:
  void list();

  coord::Coordination& coord_;
  std::string dir_;
  base::Executor& executor_;
  std::string id_;
  uint64_t session_listener_ = 0;
  std::function<void(const std::vector<std::string>&)> on_change_;  // executor only
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);      // guards late callbacks
};

}  // namespace drover::recipes

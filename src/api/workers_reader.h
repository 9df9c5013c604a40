#pragma once

// The API's read of the live workers and of the leader (/workers, /leader), which BatchReader
// completes with what each worker's chunks hold. Blocking calls with deadlines, for HTTP handler
// threads. Thread-safe.

#include <chrono>
#include <optional>

#include "api/problem.h"
#include "api/store_options.h"
#include "coord/coordination.h"
#include "tasks/layout.h"

namespace drover::api {

class WorkersReader {
 public:
  WorkersReader(coord::Coordination& coord, const tasks::Layout& layout,
                const StoreOptions& options);

  // The registered workers, sorted by id, and the leader. `assigned` counts the children of each
  // worker's /assignments folder, `running` the ones of them in its slots.
  StoreResult<WorkersView> workers();

 private:
  template <class T>
  coord::Result<T> await(const coord::Future<T>& future) const {
    return awaitFor(future, options_.call_timeout);
  }
  StoreResult<std::optional<LeaderInfo>> readLeader();

  coord::Coordination& coord_;
  const tasks::Layout& layout_;
  const StoreOptions& options_;
};

}  // namespace drover::api

#pragma once

// Reading the tree for the fault suite: how many tokens are left (the drain), whether membership
// and the event log have settled, the full dump the checker judges (after a `sync`, so a fresh
// session sees every committed write), and the planted violations of the checker's self-test.
//
// All calls block, each request with a 30 s deadline; errors come back as text.

#include <functional>
#include <string>
#include <tl/expected.hpp>
#include <vector>

#include "coord/coordination.h"
#include "jepsen/checker.h"
#include "tasks/layout.h"

namespace drover::jepsen {

// Jobs plus assignments: the tasks that are not terminal yet (the token rule).
tl::expected<int64_t, std::string> countTokens(coord::Coordination& c, const tasks::Layout& l);

// True once /workers and /election each hold exactly `nodes` children and /events is within the
// leader's bound of 1,000 records.
tl::expected<bool, std::string> settled(coord::Coordination& c, const tasks::Layout& l, int nodes);

// Everything the checker reads: statuses, jobs, assignments, workers, election, events, epoch.
tl::expected<Tree, std::string> dumpTree(coord::Coordination& c, const tasks::Layout& l);

// Damages the run on purpose so the check must fail: "lost" deletes the status of the first
// acknowledged task, "phantom" writes a status for an id nobody submitted, "leftover" leaves a
// job behind for a finished task, "crash" calls `crash(SIGABRT)` (a node dies on its own).
// Returns what it did (naming the task), or why it could not.
std::string plant(coord::Coordination& c, const tasks::Layout& l, const std::string& kind,
                  const std::vector<Request>& history, const std::function<void(int)>& crash);

}  // namespace drover::jepsen
